"""The schedules of two of the field's cures (instance noise, G's EMA) and D's top-singular-value probe,
shared by both engines (the cures themselves act in
`gan_core.trainer`, `gan_core.population` and, for spectral norm, `gan_core.models`).

Instance noise (Sønderby et al. 2016) is annealed linearly to 0 over the run, epoch by epoch: the
std is constant within an epoch, so its probe is exact. G's EMA (Yazıcı et al. 2019) warms up as
tf.train.ExponentialMovingAverage does with num_updates: early averages would otherwise be mostly
the untrained initial weights (at 0.999, 1,250 steps of a quick run leave 29% of the weight on them).
"""

from __future__ import annotations

import torch


def instance_noise_std(std: float, epoch: int, epochs: int) -> float:
    """The noise std in (0-based) `epoch` of `epochs`: std at the first epoch, std / epochs at the last."""
    return std * (1 - epoch / epochs)


def ema_decay(decay, updates):
    """The decay used at the `updates`-th update of the average (1-based): min(decay, (1 + n) / (10 + n)),
    for Python numbers (one run) or [P] tensors (a population)."""
    warm = (1 + updates) / (10 + updates)
    return torch.minimum(decay, warm) if isinstance(warm, torch.Tensor) else min(decay, warm)


def top_singular_value(w: torch.Tensor) -> torch.Tensor:
    """The largest singular value of a weight ([out, in]) or of each member's ([P, in, out]); NaN where
    the weight is not finite (the eigensolver refuses it, and a diverged run still gets its epoch's record).

    The square root of the largest eigenvalue of the Gram matrix on the weight's shorter side: exact,
    as the SVD is, and about 3x faster than `matrix_norm(ord=2)` on D's 784 x 1024 layer (that SVD was
    4% of the main job's epoch); the same Gram whichever way round the engine stores the weight."""
    finite = torch.isfinite(w).flatten(-2).all(-1)
    w = torch.where(finite[..., None, None], w, torch.zeros_like(w))
    gram = w @ w.transpose(-1, -2) if w.shape[-2] <= w.shape[-1] else w.transpose(-1, -2) @ w
    sv = torch.linalg.eigvalsh(gram)[..., -1].clamp_min(0).sqrt()
    return torch.where(finite, sv, torch.full_like(sv, float("nan")))
