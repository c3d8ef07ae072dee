"""The seed's three losses under each clamp mode, shared by the reference trainer and the population.

All functions take D's logits of shape [..., B] and return per-row means of shape [...], so
the same code serves one run ([B] -> scalar) and a population ([P, B] -> [P]).

clamp mode  D on real             D on fake                 G (saturating)
none        -log D(x)             -log(1 - D(G(z)))         log(1 - D(G(z)))
clamp       -log clamp(D, eps, 1) -log(1 - clamp(D, 0, 1-eps))  log(1 - clamp(D, 0, 1-eps))
logits      softplus(-a)          softplus(a)               -softplus(a)

`none` is the seed's pitfall 1 (log(0) = -inf); `clamp` is the seed's cure, whose gradient is
zero wherever the clamp is active; `logits` is the stable form of the same values.

D(x) is the sigmoid of D's last layer (`output="sigmoid"`), or, in the reading where the seed's clamp
bounds are all meant to act, that layer's raw output (`output="raw"`): then clamp(y, 1e-3, 1) also
cuts D(x) above 1 on real data and clamp(y, 0, 1 - 1e-3) cuts D(G(z)) below 0 on fakes, with zero
gradient there (the seed's clamp is torch.clamp: equal values, the same dead zones).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def d_prob(logits: torch.Tensor, output: str = "sigmoid") -> torch.Tensor:
    """D's output as the seed's clamp receives it: sigmoid of the last layer, or the raw layer itself."""
    return torch.sigmoid(logits) if output == "sigmoid" else logits


def d_real_loss(logits: torch.Tensor, mode: str, eps: float | torch.Tensor, output: str = "sigmoid") -> torch.Tensor:
    if mode == "logits":
        return F.softplus(-logits).mean(-1)
    y = d_prob(logits, output)
    if mode == "clamp":
        # A tensor eps holds one bound per population member. Under a sigmoid y <= 1, so the upper
        # bound never changes a value or a gradient; on a raw output it does.
        y = torch.clamp(y, eps, 1.0) if isinstance(eps, float) else torch.clamp(y, min=eps[..., None]).clamp(max=1.0)
    return -torch.log(y).mean(-1)


def _fake_term(logits: torch.Tensor, mode: str, eps: float | torch.Tensor, output: str = "sigmoid") -> torch.Tensor:
    """Per-sample log(1 - D(G(z))) under the clamp mode."""
    if mode == "logits":
        return -F.softplus(logits)
    y = d_prob(logits, output)
    if mode == "clamp":
        # Under a sigmoid y >= 0, so the seed's lower bound 0 never acts; on a raw output it does.
        y = (torch.clamp(y, 0.0, 1.0 - eps) if isinstance(eps, float) else
             torch.clamp(y, max=(1.0 - eps)[..., None]).clamp(min=0.0))
    return torch.log(1 - y)


def d_fake_loss(logits: torch.Tensor, mode: str, eps: float | torch.Tensor, output: str = "sigmoid") -> torch.Tensor:
    return -_fake_term(logits, mode, eps, output).mean(-1)


def smoothed_real_loss(real: torch.Tensor, fake: torch.Tensor, smoothing: float | torch.Tensor) -> torch.Tensor:
    """D's real loss against target 1 - s (one-sided label smoothing): (1 - s) * real + s * fake, from
    the real and fake losses of the same logits (their clamp applies to each term)."""
    return (1 - smoothing) * real + smoothing * fake


def g_saturating(logits: torch.Tensor, mode: str, eps: float | torch.Tensor, output: str = "sigmoid") -> torch.Tensor:
    """mean log(1 - D(G(z))): the seed's G loss, and the quantity its adaptive rule reads."""
    return _fake_term(logits, mode, eps, output).mean(-1)


def g_non_saturating(logits: torch.Tensor, mode: str, eps: float | torch.Tensor,
                     output: str = "sigmoid") -> torch.Tensor:
    """mean -log D(G(z)): the usual fix for a vanishing G gradient when D(G(z)) ~ 0."""
    return d_real_loss(logits, mode, eps, output)


def clamp_hits(logits: torch.Tensor, eps: float | torch.Tensor, real: bool, output: str = "sigmoid") -> torch.Tensor:
    """Per-row count of outputs in the clamp's dead zone (where it fires, or would fire): below eps or
    above 1 on real data, above 1 - eps or below 0 on fakes (the outer bounds act on raw outputs only)."""
    y = d_prob(logits, output)
    e = eps if isinstance(eps, float) else eps[..., None]
    return (((y < e) | (y > 1)) if real else ((y > 1 - e) | (y < 0))).sum(-1)


def reported_prob(logits: torch.Tensor, output: str = "sigmoid") -> torch.Tensor:
    """D(x) as the probes report it: the output read as a probability, in [0, 1]."""
    return d_prob(logits, output).clamp(0.0, 1.0)
