"""When G trains: the seed's adaptive rule (under a declared reading of its elided parts), or a fixed k.

The seed's G phase, per batch:

    while (tmp_loss < 1.75 and rest_K <= 0) and abs(l) < 0.1:   # l = 0 before the loop
        l = <one G step's log(1 - D(G(z)))>
    if G trained: rest_K = int(1 + abs(l) * 6)

What the seed leaves open is a config key each (`gan_core.readings` lists them with the seed's line):
- `tmp_loss` is never assigned: D's loss on this batch (real + fake term), or the epoch's running mean
  of it (the trainer hands the rule the one its config names).
- `rest_K`'s countdown was elided: it goes down by one on each batch where G did not train (never
  below 0), or on every batch (then G may train again on the very next batch).
- Nothing bounds the inner loop: `g_loop_cap` caps it (a reading of our own), or is off, as in the seed.
  An uncapped loop may never return (G's gradient vanishes once D rejects every sample), so it is
  watched instead of capped: a loop still running after `g_loop_bound` steps, or whose G gradient has
  been exactly zero for `ZERO_GRADIENT_STEPS` steps in a row, is *hung*: the phase ends there and the
  run is labelled `hung` (the literal program would never have come back).
The loop's test always reads the saturating quantity log(1 - D(G(z))), whichever loss G minimises,
so the schedule means the same under both.

This module is the reference for the rule: the reference trainer drives it with real G
steps, tests drive it with scripted losses, the population engine re-implements it as masks
and is tested against the reference trainer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .config import ScheduleConfig

ZERO_GRADIENT_STEPS = 50
"""An uncapped inner loop whose G gradient was exactly zero this many steps in a row is hung: Adam's
momentum, the only thing still moving G, has decayed below 1% of its size (0.9^50 = 0.5%)."""
REST_K_MAX = 2**62
"""rest_K's largest value: the rule's 'never again' after a NaN G loss, and the most any finite loss sets
(int(1 + |l| * scale) is capped here: a loss of 1e18 would otherwise pass it). A float64 holds it exactly."""
HUNG_BOUND, HUNG_ZERO = "bound", "zero_gradient"
"""Why a G phase was judged hung: it reached g_loop_bound steps, or G's gradient stayed exactly zero."""


@dataclass
class GPhase:
    """What the G phase did on one batch."""

    steps: int
    """G updates taken on this batch."""
    capped: bool
    """True when the inner loop stopped at its cap rather than by the seed's test."""
    last_l: float | None
    """The adaptive rule's saturating G loss of the last step (None where it was not read)."""
    hung: str | None = None
    """HUNG_BOUND or HUNG_ZERO when the uncapped loop was judged never to return (None otherwise)."""


class AdaptiveRule:
    """The seed's tmp_loss / rest_K rule with the inner G loop, for one run."""

    def __init__(self, cfg: ScheduleConfig) -> None:
        self.cfg = cfg
        self.rest_k = 0

    def run(self, tmp_loss: Callable[[], float], g_step: Callable[[], object]) -> GPhase:
        """Run one batch's G phase; `tmp_loss()` is read only when rest_K allows G to train.

        `g_step()` takes one G step and returns its saturating loss (a float or a 0-d tensor), or the
        pair (loss, G's pre-clip gradient norm) when the hang detector is to read the gradient.
        """
        cfg = self.cfg
        every = cfg.rest_k_countdown == "every_batch"
        if every:
            self.rest_k = max(self.rest_k - 1, 0)
        # rest_K is tested first so that D's loss is read from the device only when it matters.
        if not (self.rest_k <= 0 and tmp_loss() < cfg.d_loss_threshold):
            if not every:
                self.rest_k = max(self.rest_k - 1, 0)
            return GPhase(0, False, None)
        cap = cfg.g_loop_cap
        l, steps, zero_run, hung = 0.0, 0, 0, None
        while abs(l) < cfg.g_loss_threshold and (cap is None or steps < cap):
            if cap is None and (steps >= cfg.g_loop_bound or zero_run >= ZERO_GRADIENT_STEPS):
                hung = HUNG_BOUND if steps >= cfg.g_loop_bound else HUNG_ZERO
                break
            out = g_step()
            loss, norm = out if isinstance(out, tuple) else (out, None)
            l = float(loss)  # the seed's float(l): the one host sync this rule needs
            steps += 1
            zero_run = zero_run + 1 if norm is not None and float(norm) == 0.0 else 0
        capped = cap is not None and abs(l) < cfg.g_loss_threshold  # NaN is never "below": a NaN ends it uncapped
        # A NaN l leaves G frozen for good (rest_K never reaches 0 again); the run is diverged anyway.
        self.rest_k = min(int(1 + abs(l) * cfg.rest_k_scale), REST_K_MAX) if math.isfinite(l) else REST_K_MAX
        return GPhase(steps, capped, l, hung)


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
