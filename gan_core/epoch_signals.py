"""The signals a population accumulates step by step over an epoch, and the per-member epoch
statistics made of them in one device read (the reference trainer's `Probes.summary`, per member)."""

from __future__ import annotations

import math

import torch


def new_accumulator() -> dict[str, list]:
    """Per-step [P] signals that `batch` appends to and `summarise` reads once (and `rows`: each batch's size,
    a number on the host)."""
    return {k: [] for k in ("rows", "loss_d", "loss_g", "loss_g_bad", "d_real", "d_fake", "grad_d", "grad_g", "grad_g_max",
                            "clamp_hits", "clamp_hits_g", "bad", "g_steps", "g_batches", "g_capped", "updated",
                            "g_hung_bound", "g_hung_zero", "g_phase",
                            "leak_d", "leak_g", "frozen_grad_g", "frozen_grad_d", "r1")}


def summarise(acc: dict, P: int, device: torch.device) -> dict[str, list]:
    """Per-member epoch statistics of a population of P from its accumulated signals, in one device read."""

    def stack(k):
        return torch.stack(acc[k]).double() if acc[k] else torch.zeros(1, P, dtype=torch.float64,
                                                                       device=device)

    n = stack("updated").sum(0)
    g_steps = stack("g_steps").sum(0)
    d_real, d_fake, loss_d, grad_d = stack("d_real"), stack("d_fake"), stack("loss_d"), stack("grad_d")
    upd = stack("updated")
    upd2 = upd.repeat_interleave(2, 0) if len(grad_d) == 2 * len(upd) else upd

    def mean(t, w, count):
        return torch.where(count > 0, (t.nan_to_num(0.0) * w).sum(0) / count.clamp(min=1),
                           torch.full_like(count, math.nan))

    def per_g_step(k):
        return torch.where(g_steps > 0, stack(k).nan_to_num(0.0).sum(0) / g_steps.clamp(min=1), torch.zeros_like(n))

    bad = stack("bad").sum(0) + ((~torch.isfinite(loss_d)) & (upd > 0)).double().sum(0)
    hits = (stack("clamp_hits") * upd2).sum(0) + stack("clamp_hits_g").sum(0)
    rows = torch.tensor(acc["rows"] or [0], dtype=torch.float64, device=device)[:, None]  # each batch's size
    total = ((2 * upd + stack("g_steps")) * rows).sum(0) if acc["rows"] else torch.zeros_like(n)
    zeros = torch.zeros_like(n)
    out = {
        "loss_d": torch.where(((~torch.isfinite(loss_d)) & (upd > 0)).any(0), torch.full_like(n, math.nan),
                              mean(loss_d, upd, n)),
        "loss_g": torch.where(stack("loss_g_bad").sum(0) > 0, torch.full_like(n, math.nan),
                              torch.where(g_steps > 0, stack("loss_g").sum(0) / g_steps.clamp(min=1),
                                          torch.full_like(n, math.nan))),
        "d_real": mean(d_real, upd, n), "d_fake": mean(d_fake, upd, n),
        "clamp_rate": torch.where(total > 0, hits / total.clamp(min=1), zeros),
        "grad_d": mean(grad_d, upd2, 2 * n), "grad_d_max": (grad_d.nan_to_num(nan=-1.0) * upd2).max(0).values.clamp(min=0),
        "grad_g": per_g_step("grad_g"),
        "grad_g_max": stack("grad_g_max").nan_to_num(nan=-1.0).max(0).values.clamp(min=0),
        "frozen_grad_d": per_g_step("frozen_grad_d") if acc["frozen_grad_d"] else zeros,
        "frozen_grad_g": mean(stack("frozen_grad_g"), upd, n) if acc["frozen_grad_g"] else zeros,
        "leak_d": mean(stack("leak_d"), upd2, 2 * n) if acc["leak_d"] else zeros,
        "leak_g": per_g_step("leak_g") if acc["leak_g"] else zeros,
        "r1_penalty": mean(stack("r1"), upd, n) if acc["r1"] else zeros,
        "g_steps": g_steps, "g_batches": stack("g_batches").sum(0), "g_capped": stack("g_capped").sum(0),
        "g_hung_bound": stack("g_hung_bound").sum(0), "g_hung_zero": stack("g_hung_zero").sum(0),
        "g_phase_max": stack("g_phase").max(0).values,
        "nonfinite": bad, "updated": n,
    }
    names = list(out)
    values = torch.stack([out[k] for k in names]).cpu().tolist()
    res = dict(zip(names, values))
    for k in ("g_steps", "g_batches", "g_capped", "g_hung_bound", "g_hung_zero", "g_phase_max", "nonfinite"):
        res[k] = [int(v) for v in res[k]]
    return res
