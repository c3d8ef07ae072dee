"""The seed's three losses under each clamp mode, shared by the reference trainer and the population.

All functions take D's logits of shape [..., B] and return per-row means of shape [...], so
the same code serves one run ([B] -> scalar) and a population ([P, B] -> [P]).

clamp mode  D on real             D on fake                 G (saturating)
none        -log D(x)             -log(1 - D(G(z)))         log(1 - D(G(z)))
clamp       -log clamp(D, eps, 1) -log(1 - clamp(D, 0, 1-eps))  log(1 - clamp(D, 0, 1-eps))
logits      softplus(-a)          softplus(a)               -softplus(a)

`none` is the seed's pitfall 1 (log(0) = -inf); `clamp` is the seed's cure, whose gradient is
zero wherever the clamp is active; `logits` is the stable form of the same values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def d_real_loss(logits: torch.Tensor, mode: str, eps: float | torch.Tensor) -> torch.Tensor:
    if mode == "logits":
        return F.softplus(-logits).mean(-1)
    y = torch.sigmoid(logits)
    if mode == "clamp":
        # A tensor eps holds one bound per population member.
        y = torch.clamp(y, eps, 1.0) if isinstance(eps, float) else torch.clamp(y, min=eps[..., None])
    return -torch.log(y).mean(-1)


def _fake_term(logits: torch.Tensor, mode: str, eps: float | torch.Tensor) -> torch.Tensor:
    """Per-sample log(1 - D(G(z))) under the clamp mode."""
    if mode == "logits":
        return -F.softplus(logits)
    y = torch.sigmoid(logits)
    if mode == "clamp":
        # y >= 0 always, so the seed's lower bound 0 never changes a value or a gradient.
        y = torch.clamp(y, 0.0, 1.0 - eps) if isinstance(eps, float) else torch.clamp(y, max=(1.0 - eps)[..., None])
    return torch.log(1 - y)


def d_fake_loss(logits: torch.Tensor, mode: str, eps: float | torch.Tensor) -> torch.Tensor:
    return -_fake_term(logits, mode, eps).mean(-1)


def smoothed_real_loss(real: torch.Tensor, fake: torch.Tensor, smoothing: float | torch.Tensor) -> torch.Tensor:
    """D's real loss against target 1 - s (one-sided label smoothing): (1 - s) * real + s * fake, from
    the real and fake losses of the same logits (their clamp applies to each term)."""
    return (1 - smoothing) * real + smoothing * fake


def g_saturating(logits: torch.Tensor, mode: str, eps: float | torch.Tensor) -> torch.Tensor:
    """mean log(1 - D(G(z))): the seed's G loss, and the quantity its adaptive rule reads."""
    return _fake_term(logits, mode, eps).mean(-1)


def g_non_saturating(logits: torch.Tensor, mode: str, eps: float | torch.Tensor) -> torch.Tensor:
    """mean -log D(G(z)): the usual fix for a vanishing G gradient when D(G(z)) ~ 0."""
    return d_real_loss(logits, mode, eps)


def clamp_hits(logits: torch.Tensor, eps: float | torch.Tensor, real: bool) -> torch.Tensor:
    """Per-row count of outputs in the clamp's dead zone (where it fires, or would fire)."""
    y = torch.sigmoid(logits)
    e = eps if isinstance(eps, float) else eps[..., None]
    return ((y < e) if real else (y > 1 - e)).sum(-1)
