"""Per-step signals kept on the device during an epoch and read from it once at the epoch's end.

Every toggle has a probe here that shows it did something: the clamp's hit rate, the
pre-clip gradient norms, the gradients a frozen network received (wasted compute), the
stale gradients that leaked into an update, and how many G steps the schedule took.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from dataclasses import dataclass

import torch

from .evaluator import Quality


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did, as read from the device at its end (means are over the epoch)."""

    epoch: int
    """1-based epoch number."""
    step: int
    """Batches trained so far, this epoch included."""
    loss_d: float
    """D's loss on a batch (real term + fake term, the seed's tmp_loss); log 4 at equilibrium."""
    loss_g: float
    """The loss G minimised, over its steps (NaN when G never trained this epoch)."""
    d_real: float
    """Mean D(x) on real data."""
    d_fake: float
    """Mean D(G(z)) on fakes, at D's fake step."""
    clamp_rate: float
    """Share of D outputs in the clamp's dead zone (where the clamp fires, or would)."""
    grad_d: float
    """Mean pre-clip global L2 norm of D's gradient, over D updates."""
    grad_d_max: float
    """Largest pre-clip norm of D's gradient."""
    grad_g: float
    """Mean pre-clip global L2 norm of G's gradient, over G updates (0 without G steps)."""
    grad_g_max: float
    """Largest pre-clip norm of G's gradient."""
    frozen_grad_d: float
    """Mean norm of the gradient D received while G trained (0 when requires_grad_(False) froze it)."""
    frozen_grad_g: float
    """Mean norm of the gradient G received while D trained on fakes (wasted compute)."""
    leak_d: float
    """Mean norm of stale gradient already in D's .grad when D's own backward began."""
    leak_g: float
    """Mean norm of stale gradient already in G's .grad when G's own backward began."""
    g_steps: int
    """G updates this epoch."""
    g_batches: int
    """Batches on which G trained at least once."""
    g_capped: int
    """Batches on which the adaptive inner G loop stopped at its cap."""
    nonfinite: int
    """Non-finite losses and gradient norms seen this epoch (0 in a healthy run)."""
    weights_finite: bool
    """All weights of D and G finite at the epoch's end."""
    batches: int
    """Batches this epoch."""
    seconds: float
    """Training time of the epoch (evaluation excluded)."""
    samples_per_s: float
    """Real images through D per second."""
    quality: Quality | None = None
    """Sample quality, on evaluation epochs."""

    def metrics(self) -> dict[str, float]:
        """Numeric fields (quality flattened with a q_ prefix), e.g. for MLflow."""
        out = {f.name: float(getattr(self, f.name)) for f in dataclasses.fields(self)
               if f.name not in ("epoch", "quality")}
        if self.quality is not None:
            out.update({f"q_{k}": float(v) for k, v in self.quality.as_dict().items()})
        return out

    @property
    def diverged(self) -> bool:
        return self.nonfinite > 0 or not self.weights_finite


class Probes:
    """Collects 0-d tensors per step; `summary()` reduces them with one device read."""

    def __init__(self) -> None:
        self.values: dict[str, list[torch.Tensor]] = defaultdict(list)
        self.g_steps = self.g_batches = self.g_capped = self.batches = 0
        self.clamp_total = 0  # D outputs seen; known on the host, so not kept on the device

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
            "nonfinite": int(bad),
        }
