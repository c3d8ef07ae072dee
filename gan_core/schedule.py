"""When G trains: the seed's adaptive rule (our reading of its elided parts), or a fixed k.

The seed's G phase, per batch:

    while (tmp_loss < 1.75 and rest_K <= 0) and abs(l) < 0.1:   # l = 0 before the loop
        l = <one G step's log(1 - D(G(z)))>
    if G trained: rest_K = int(1 + abs(l) * 6)

`tmp_loss` is D's loss on the batch (real term + fake term). `rest_K` counts the batches on
which only D trains before G may train again: it goes down by one on each batch where G did
not train (never below 0). The inner loop keeps training G while D still confidently rejects
its samples (|l| small means D(G(z)) near 0); nothing bounds it in the seed, so a cap is
added (and is itself a toggle). The loop's test always reads the saturating quantity
log(1 - D(G(z))), whichever loss G minimises, so the schedule means the same under both.

This module is the reference for the rule: the reference trainer drives it with real G
steps, tests drive it with scripted losses, the population engine re-implements it as masks
and is tested against the reference trainer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .config import ScheduleConfig


@dataclass
class GPhase:
    """What the G phase did on one batch."""

    steps: int
    """G updates taken on this batch."""
    capped: bool
    """True when the inner loop stopped at its cap rather than by the seed's test."""
    last_l: float | None
    """The adaptive rule's saturating G loss of the last step (None where it was not read)."""


class AdaptiveRule:
    """The seed's tmp_loss / rest_K rule with the inner G loop, for one run."""

    def __init__(self, cfg: ScheduleConfig) -> None:
        self.cfg = cfg
        self.rest_k = 0

    def run(self, tmp_loss: Callable[[], float], g_step: Callable[[], object]) -> GPhase:
        """Run one batch's G phase; `tmp_loss()` is read only when rest_K allows G to train.

        `g_step()` takes one G step and returns its saturating loss (a float or a 0-d tensor).
        """
        cfg = self.cfg
        # rest_K is tested first so that D's loss is read from the device only when it matters.
        if not (self.rest_k <= 0 and tmp_loss() < cfg.d_loss_threshold):
            self.rest_k = max(self.rest_k - 1, 0)
            return GPhase(0, False, None)
        l, steps = 0.0, 0
        while abs(l) < cfg.g_loss_threshold and steps < cfg.g_loop_cap:
            l = float(g_step())  # the seed's float(l): the one host sync this rule needs
            steps += 1
        capped = abs(l) < cfg.g_loss_threshold  # NaN is never "below", so a NaN ends the loop uncapped
        # A NaN l leaves G frozen for good (rest_K never reaches 0 again); the run is diverged anyway.
        self.rest_k = int(1 + abs(l) * cfg.rest_k_scale) if math.isfinite(l) else 2**62
        return GPhase(steps, capped, l)


class FixedRule:
    """k D batches per G step: G takes one step on every k-th batch."""

    def __init__(self, cfg: ScheduleConfig) -> None:
        self.cfg = cfg
        self.batches = 0

    def run(self, tmp_loss: Callable[[], float], g_step: Callable[[], object]) -> GPhase:
        """Neither loss is read: a fixed schedule makes no host sync."""
        self.batches += 1
        if self.batches % self.cfg.d_steps:
            return GPhase(0, False, None)
        g_step()
        return GPhase(1, False, None)


def make_rule(cfg: ScheduleConfig) -> AdaptiveRule | FixedRule:
    return AdaptiveRule(cfg) if cfg.schedule == "adaptive" else FixedRule(cfg)
