"""Per-step signals kept on the device during an epoch and read from it once at the epoch's end.

Every toggle has a probe here that shows it did something: the clamp's hit rate, the
pre-clip gradient norms, the gradients a frozen network received (wasted compute), the
stale gradients that leaked into an update, and how many G steps the schedule took; and for the
cures, the R1 penalty (the epoch-end ones, singular values and the EMA's distance, are read by
each engine from its weights).
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch

from .schedule import HUNG_BOUND, HUNG_ZERO, GPhase


class Probes:
    """Collects 0-d tensors per step; `summary()` reduces them with one device read."""

    def __init__(self) -> None:
        self.values: dict[str, list[torch.Tensor]] = defaultdict(list)
        self.g_steps = self.g_batches = self.g_capped = self.batches = 0
        self.g_hung_bound = self.g_hung_zero = self.g_phase_max = 0
        self.clamp_total = 0  # D outputs seen; known on the host, so not kept on the device

    def phase(self, phase: GPhase) -> None:
        """Count one batch's G phase: its steps, and whether it stopped at the cap or was judged hung."""
        self.g_steps += phase.steps
        self.g_batches += phase.steps > 0
        self.g_capped += phase.capped
        self.g_hung_bound += phase.hung == HUNG_BOUND
        self.g_hung_zero += phase.hung == HUNG_ZERO
        self.g_phase_max = max(self.g_phase_max, phase.steps)

    def add(self, **values: torch.Tensor) -> None:
        for k, v in values.items():
            self.values[k].append(v.detach())

    def summary(self) -> dict[str, float]:
        """Means, maxima and the non-finite batch count, read from the device in one go."""
        names, stats = [], []
        for k, vals in self.values.items():
            t = torch.stack([v.double().reshape(()) for v in vals])
            names += [f"{k}:sum", f"{k}:max", f"{k}:n", f"{k}:bad"]
            stats += [t.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0).sum(), t.nan_to_num(nan=-1.0).max(),
                      torch.tensor(float(len(vals)), dtype=torch.float64, device=t.device),
                      (~torch.isfinite(t)).sum().double()]
        read = dict(zip(names, torch.stack(stats).tolist())) if stats else {}

        def mean(k: str) -> float:
            n = read.get(f"{k}:n", 0.0)
            if read.get(f"{k}:bad", 0.0) > 0:
                return math.nan
            return read[f"{k}:sum"] / n if n else math.nan

        bad = sum(read.get(f"{k}:bad", 0.0) for k in ("loss_d", "loss_g", "grad_d", "grad_g"))
        hits, total = read.get("clamp_hits:sum", 0.0), self.clamp_total
        return {
            "loss_d": mean("loss_d"),
            "loss_g": mean("loss_g"),
            "d_real": mean("d_real"),
            "d_fake": mean("d_fake"),
            "clamp_rate": hits / total if total else 0.0,
            "grad_d": mean("grad_d"),
            "grad_d_max": read.get("grad_d:max", 0.0),
            "grad_g": mean("grad_g") if self.g_steps else 0.0,
            "grad_g_max": read.get("grad_g:max", 0.0) if self.g_steps else 0.0,
            "frozen_grad_d": mean("frozen_grad_d") if self.g_steps else 0.0,
            "frozen_grad_g": mean("frozen_grad_g"),
            "leak_d": mean("leak_d"),
            "leak_g": mean("leak_g") if self.g_steps else 0.0,
            "r1_penalty": mean("r1") if "r1" in self.values else 0.0,
            "nonfinite": int(bad),
        }
