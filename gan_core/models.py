"""The seed's networks: D is 2 linear layers and 1 LeakyReLU, G is 3 linear layers and 2 ReLU.

D returns logits; the trainer applies the sigmoid itself, so the `logits` clamp mode can use
the numerically stable BCE-with-logits while the other modes see D(x) exactly as the seed does.
Initialisation draws from an explicit generator so that a run's weights are a function of its
seed alone (the population engine builds its members' weights with these same functions).

Spectral normalisation (a cure, off by default) is written out here rather than taken from
`torch.nn.utils.parametrizations.spectral_norm`: that one draws its power-iteration vectors from
the global RNG and renames D's parameters, and a run must stay a function of its seed with one
checkpoint layout. The algorithm is the same (tests hold it to torch's, step by step).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


def init_linear_(layer: nn.Linear, gen: torch.Generator) -> None:
    """nn.Linear's own default initialisation, drawn from `gen`."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=gen)
    bound = 1 / math.sqrt(layer.in_features)
    nn.init.uniform_(layer.bias, -bound, bound, generator=gen)


G_OUTPUT = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "none": lambda t: t}
"""G's output activation per g_output."""


def to_pixels(out: torch.Tensor, g_output: str) -> torch.Tensor:
    """G's output as an image in [0, 1]: tanh's [-1, 1] rescaled, an unbounded output clipped."""
    if g_output == "tanh":
        return (out + 1) / 2
    return out.clamp(0, 1) if g_output == "none" else out


class Generator(nn.Module):
    """z -> image: Linear, ReLU, Linear, ReLU, Linear, then sigmoid, tanh or nothing (g_output)."""

    def __init__(self, cfg: ModelConfig, image_dim: int) -> None:
        super().__init__()
        h1, h2 = cfg.g_hidden
        self.net = nn.Sequential(
            nn.Linear(cfg.z_dim, h1), nn.ReLU(),
            nn.Linear(h1, h2), nn.ReLU(),
            nn.Linear(h2, image_dim),
        )
        self.output = G_OUTPUT[cfg.g_output]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.output(self.net(z))


SN_EPS = 1e-12
"""The power iteration's normalisation floor (torch's spectral_norm default)."""
SN_INIT_ITERATIONS = 15
"""Power iterations at initialisation (as torch's spectral_norm), so the first sigma is already close."""


def power_iteration_(W: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> None:
    """One step of torch's _power_method on W [out, in], updating u [out] and v [in] in place."""
    with torch.no_grad():
        u.copy_(F.normalize(torch.mv(W, v), dim=0, eps=SN_EPS))
        v.copy_(F.normalize(torch.mv(W.T, u), dim=0, eps=SN_EPS))


class Discriminator(nn.Module):
    """image -> logit: Linear, LeakyReLU, Linear (D(x) = sigmoid of the logit)."""

    def __init__(self, cfg: ModelConfig, image_dim: int, spectral_norm: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(image_dim, cfg.d_hidden), nn.LeakyReLU(cfg.leaky_slope),
            nn.Linear(cfg.d_hidden, 1),
        )
        self.spectral_norm = spectral_norm

    @property
    def linears(self) -> list[nn.Linear]:
        return [m for m in self.net if isinstance(m, nn.Linear)]

    def init_spectral_norm(self, gen: torch.Generator) -> None:
        """Power-iteration vectors u_i, v_i drawn from `gen` and iterated as torch does at registration."""
        for i, layer in enumerate(self.linears):
            W = layer.weight.detach()
            u = F.normalize(torch.randn(W.shape[0], generator=gen, dtype=W.dtype), dim=0, eps=SN_EPS)
            v = F.normalize(torch.randn(W.shape[1], generator=gen, dtype=W.dtype), dim=0, eps=SN_EPS)
            for _ in range(SN_INIT_ITERATIONS):
                power_iteration_(W, u, v)
            self.register_buffer(f"sn_u{i}", u)
            self.register_buffer(f"sn_v{i}", v)

    def sn_vectors(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(getattr(self, f"sn_u{i}"), getattr(self, f"sn_v{i}")) for i in range(len(self.linears))]

    def weights(self, update: bool = False) -> list[torch.Tensor]:
        """Each layer's weight as D uses it: W / sigma(W) under spectral norm (one power iteration first
        when `update`: D is being trained), else W itself."""
        if not self.spectral_norm:
            return [layer.weight for layer in self.linears]
        out = []
        with torch.autocast(self.net[0].weight.device.type, enabled=False):  # sigma in the weights' dtype
            for layer, (u, v) in zip(self.linears, self.sn_vectors()):
                W = layer.weight
                if update:
                    power_iteration_(W.detach(), u, v)
                u_, v_ = u.clone(), v.clone()  # the graph keeps these, not the buffers the next step updates
                out.append(W / torch.dot(u_, torch.mv(W, v_)))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.spectral_norm:
            return self.net(x).squeeze(-1)
        first, act, last = self.net
        w0, w1 = self.weights(update=self.training)  # torch's spectral_norm also iterates in train() only
        return F.linear(act(F.linear(x, w0, first.bias)), w1, last.bias).squeeze(-1)


def build_models(cfg: ModelConfig, image_dim: int, seed: int, device: torch.device,
                 dtype: torch.dtype, spectral_norm: bool = False) -> tuple[Generator, Discriminator]:
    """G and D with weights drawn from `seed` (G's layers first, then D's, then D's power-iteration
    vectors under spectral norm, so the weights are the same with it or without)."""
    gen = torch.Generator().manual_seed(seed)
    G, D = Generator(cfg, image_dim), Discriminator(cfg, image_dim, spectral_norm)
    for net in (G, D):
        for layer in net.modules():
            if isinstance(layer, nn.Linear):
                init_linear_(layer, gen)
    if spectral_norm:
        D.init_spectral_norm(gen)
    return G.to(device=device, dtype=dtype), D.to(device=device, dtype=dtype)
