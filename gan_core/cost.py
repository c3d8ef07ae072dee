"""What one member-step costs in arithmetic, counted from the configuration: the floor a run's speed is
measured against (`gan-sweep bench`).

A member-step is one batch of one member: D's update on real data, D's update on G's samples, and
the G steps the schedule takes on that batch. Only the linear layers' matrix products are counted (a
linear layer of `i` inputs and `o` outputs costs 2*B*i*o FLOPs forward, as much again for its weight
gradient and again for its input gradient); activations, losses, the optimiser and the probes are
elementwise work on far fewer numbers, and they are what the floor leaves out. Input gradients are
counted only where the loss needs them: not for a network's first layer's input (data or z), and D's
weights get no gradient during G's step (D is frozen).

The optimiser is counted apart, in bytes: its update does a few operations per parameter, so it is
bound by memory, not arithmetic. Adam's update reads each parameter, its gradient and both moments and
writes the parameter and the moments back (7 numbers per parameter per update, as torch's fused kernel
does); SGD reads 3 and writes 2 with momentum, 2 and 1 without.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import RunConfig
from .device import TORCH_DTYPES


@dataclass(frozen=True)
class StepCost:
    """FLOPs of one member-step, by part."""

    d_updates: float
    """D's two updates: forward and backward through D, plus G's forward for the fake batch."""
    g_step: float
    """One G step: G and D forward, D's input gradients, G's weight and input gradients."""
    g_steps_per_batch: float
    """G steps the schedule takes per batch (the fixed schedule: 1 / d_steps)."""
    optimiser_bytes_per_update: tuple[float, float]
    """Bytes the optimiser streams for one update of D and one of G (parameters x numbers x width)."""

    @property
    def flops(self) -> float:
        """The member-step's FLOPs."""
        return self.d_updates + self.g_steps_per_batch * self.g_step

    @property
    def optimiser_bytes(self) -> float:
        """Bytes the member-step's optimiser updates stream: D's two updates and G's steps."""
        d, g = self.optimiser_bytes_per_update
        return 2 * d + self.g_steps_per_batch * g


def layers(cfg: RunConfig, image_dim: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(inputs, outputs) of G's and D's linear layers."""
    m = cfg.model
    widths = [m.z_dim, *m.g_hidden, image_dim]
    return list(zip(widths, widths[1:])), [(image_dim, m.d_hidden), (m.d_hidden, 1)]


NUMBERS_PER_PARAMETER = {"adam": 7, "sgd": 5, "sgd_no_momentum": 3}
"""Numbers an update reads and writes per parameter (see the module's docstring)."""

def parameters(cfg: RunConfig, image_dim: int) -> tuple[int, int]:
    """D's and G's parameter counts (weights and biases of their linear layers)."""
    g, d = layers(cfg, image_dim)
    return sum(i * o + o for i, o in d), sum(i * o + o for i, o in g)


def member_step(cfg: RunConfig, image_dim: int, g_steps_per_batch: float | None = None) -> StepCost:
    """The arithmetic of one member-step; `g_steps_per_batch` as measured where the schedule varies it
    (the adaptive rule), else the fixed schedule's 1 / d_steps."""
    B = cfg.data.batch_size
    g, d = layers(cfg, image_dim)
    fwd_g = sum(2 * B * i * o for i, o in g)
    fwd_d = sum(2 * B * i * o for i, o in d)
    first_g, first_d = 2 * B * g[0][0] * g[0][1], 2 * B * d[0][0] * d[0][1]
    d_update = fwd_d + fwd_d + (fwd_d - first_d)  # forward, weight gradients, input gradients past layer 1
    g_step = fwd_g + fwd_d + fwd_d + fwd_g + (fwd_g - first_g)  # D frozen: its input gradients only
    if g_steps_per_batch is None:
        g_steps_per_batch = 1 / cfg.schedule.d_steps if cfg.schedule.schedule == "fixed" else 1.0
    opt = cfg.optim.optimiser if cfg.optim.optimiser == "adam" or cfg.optim.momentum else "sgd_no_momentum"
    width = NUMBERS_PER_PARAMETER[opt] * TORCH_DTYPES[cfg.dtype].itemsize  # bf16 autocast keeps fp32 weights
    d_params, g_params = parameters(cfg, image_dim)
    return StepCost(2 * d_update + fwd_g, g_step, g_steps_per_batch, (width * d_params, width * g_params))
