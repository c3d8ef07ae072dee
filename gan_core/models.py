"""The seed's networks: D is 2 linear layers and 1 LeakyReLU, G is 3 linear layers and 2 ReLU.

D returns logits; the trainer applies the sigmoid itself, so the `logits` clamp mode can use
the numerically stable BCE-with-logits while the other modes see D(x) exactly as the seed does.
Initialisation draws from an explicit generator so that a run's weights are a function of its
seed alone (the population engine builds its members' weights with these same functions).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import ModelConfig


def init_linear_(layer: nn.Linear, gen: torch.Generator) -> None:
    """nn.Linear's own default initialisation, drawn from `gen`."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=gen)
    bound = 1 / math.sqrt(layer.in_features)
    nn.init.uniform_(layer.bias, -bound, bound, generator=gen)


class Generator(nn.Module):
    """z -> image: Linear, ReLU, Linear, ReLU, Linear, then sigmoid or tanh."""

    def __init__(self, cfg: ModelConfig, image_dim: int) -> None:
        super().__init__()
        h1, h2 = cfg.g_hidden
        self.net = nn.Sequential(
            nn.Linear(cfg.z_dim, h1), nn.ReLU(),
            nn.Linear(h1, h2), nn.ReLU(),
            nn.Linear(h2, image_dim),
        )
        self.output = torch.sigmoid if cfg.g_output == "sigmoid" else torch.tanh

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.output(self.net(z))


class Discriminator(nn.Module):
    """image -> logit: Linear, LeakyReLU, Linear (D(x) = sigmoid of the logit)."""

    def __init__(self, cfg: ModelConfig, image_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(image_dim, cfg.d_hidden), nn.LeakyReLU(cfg.leaky_slope),
            nn.Linear(cfg.d_hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def build_models(cfg: ModelConfig, image_dim: int, seed: int, device: torch.device,
                 dtype: torch.dtype) -> tuple[Generator, Discriminator]:
    """G and D with weights drawn from `seed` (G's layers first, then D's)."""
    gen = torch.Generator().manual_seed(seed)
    G, D = Generator(cfg, image_dim), Discriminator(cfg, image_dim)
    for net in (G, D):
        for layer in net.modules():
            if isinstance(layer, nn.Linear):
                init_linear_(layer, gen)
    return G.to(device=device, dtype=dtype), D.to(device=device, dtype=dtype)
