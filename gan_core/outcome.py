"""Every run gets exactly one label, the epoch it was decided, and the evidence for it.

diverged       a non-finite loss, gradient norm or weight (sealed at once).
d_overpowered  D's loss ~0 and D(G(z)) ~0 for a sustained window: the seed's pitfall 3 (sealed).
mode_collapse  samples look like data (precision) but miss classes.
poor_quality   none of the above, but quality short of success (e.g. too small an lr).
success        every class covered and FLD at or below the success threshold.

A third sealed state has no label of its own: dead gradients (D's and G's gradients exactly
zero for a window, as when D outputs 1 everywhere and the clamp zeroes every gradient). Nothing
can change after that, so the run stops and is labelled by the quality it froze at, with
`mechanism = dead_gradients` in the evidence.

The thresholds are calibrated on the evaluator's own scale (see `calibrate` and the README's
"Outcome labels" section): success_fld is the FLD of real held-out digits with Gaussian
pixel noise of std 0.3 added, i.e. "at least as close to the data as heavily noised real
digits"; precision separates data-like samples (real, one class: 0.9) from noise and an
untrained G (0.0 to 0.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .evaluator import Quality
from .probes import EpochRecord

LABELS = ("diverged", "d_overpowered", "mode_collapse", "poor_quality", "success")
FAILURES = LABELS[:4]


@dataclass(frozen=True)
class Thresholds:
    """Where each label begins (defaults from the MNIST calibration; see the module docstring)."""

    success_fld: float = 100.0
    """success needs FLD at or below this (overridden by the evaluator's calibrated value)."""
    success_coverage: int = 10
    """success needs at least this many classes covered (all of MNIST's 10)."""
    datalike_junk: float = 0.5
    """Samples look like data when at most this share is called "not data" by the evaluator."""
    overpowered_loss_d: float = 0.05
    """d_overpowered: D's epoch-mean loss below this (log 4 = 1.39 at equilibrium) ..."""
    overpowered_d_fake: float = 0.01
    """... and mean D(G(z)) below this ..."""
    overpowered_window: int = 2
    """... for this many consecutive epochs."""
    dead_grad: float = 1e-12
    """dead gradients: the largest pre-clip norm of D's and of G's gradient at or below this ..."""
    dead_window: int = 2
    """... for this many consecutive epochs."""


@dataclass(frozen=True)
class Verdict:
    """A run's label, when it was decided, and why."""

    label: str
    """One of LABELS."""
    epoch: int
    """The epoch at which the label was decided (for final labels: from which it held to the end)."""
    evidence: str
    """One sentence: which signal crossed which threshold."""
    sealed: bool
    """Decided before the end of training: nothing later can change it, so the run may stop."""
    signals: dict[str, Any] = field(default_factory=dict)
    """The numbers behind the evidence."""


def label_quality(q: Quality, th: Thresholds) -> tuple[str, str]:
    """success, mode_collapse or poor_quality for one quality measurement, with the reason."""
    if q.coverage >= th.success_coverage and q.fld <= th.success_fld:
        return "success", (f"FLD {q.fld:.1f} <= {th.success_fld:.1f} with {q.coverage} classes covered")
    if q.junk > th.datalike_junk:
        return "poor_quality", (f"samples do not look like data ({q.junk:.0%} called not-data > "
                                f"{th.datalike_junk:.0%}; FLD {q.fld:.1f})")
    if q.coverage < th.success_coverage:
        return "mode_collapse", (f"samples look like data ({q.junk:.0%} not-data) but cover only {q.coverage} of "
                                 f"{th.success_coverage} classes (KL from uniform {q.class_kl:.2f}, FLD {q.fld:.1f})")
    return "poor_quality", f"all {q.coverage} classes covered but FLD {q.fld:.1f} > {th.success_fld:.1f}"


class Judge:
    """Labels a run from its epoch records; ask `observe` after each epoch, `final` at the end."""

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.th = thresholds or Thresholds()
        self.history: list[EpochRecord] = []
        self.sealed: Verdict | None = None

    def observe(self, rec: EpochRecord) -> Verdict | None:
        """Record an epoch; return the verdict if the run's fate is now sealed."""
        self.history.append(rec)
        if self.sealed is None:
            self.sealed = self._sealed()
        return self.sealed

    def wants_quality(self, rec: EpochRecord) -> bool:
        """True when `rec` would seal the run as frozen (dead gradients) before any evaluation
        was made of that state: the trainer then evaluates now, so the label reflects it."""
        tail = (self.history + [rec])[-self.th.dead_window:]
        return (rec.quality is None and not rec.diverged and len(tail) == self.th.dead_window
                and all(r.grad_d_max <= self.th.dead_grad and r.grad_g_max <= self.th.dead_grad for r in tail))

    def _tail(self, n: int) -> list[EpochRecord]:
        return self.history[-n:] if len(self.history) >= n else []

    def _sealed(self) -> Verdict | None:
        th, rec = self.th, self.history[-1]
        if rec.diverged:
            what = ("weights" if not rec.weights_finite else "losses or gradient norms")
            return Verdict("diverged", rec.epoch, f"non-finite {what} at epoch {rec.epoch} "
                           f"(loss_d {rec.loss_d}, grad_d_max {rec.grad_d_max})", True,
                           {"nonfinite": rec.nonfinite, "weights_finite": rec.weights_finite})
        tail = self._tail(th.overpowered_window)
        if tail and all(r.loss_d < th.overpowered_loss_d and r.d_fake < th.overpowered_d_fake for r in tail):
            return Verdict("d_overpowered", tail[0].epoch,
                           f"D's loss {rec.loss_d:.2g} < {th.overpowered_loss_d} and D(G(z)) {rec.d_fake:.2g} < "
                           f"{th.overpowered_d_fake} for {th.overpowered_window} epochs from epoch {tail[0].epoch}",
                           True, {"loss_d": rec.loss_d, "d_fake": rec.d_fake, "g_capped": rec.g_capped})
        tail = self._tail(th.dead_window)
        if tail and all(r.grad_d_max <= th.dead_grad and r.grad_g_max <= th.dead_grad for r in tail):
            q = self._last_quality()
            label, why = label_quality(q, th) if q else ("poor_quality", "no quality measured")
            if label == "success":  # frozen at a good point is still not a trained GAN
                label, why = "poor_quality", why + ", but training froze"
            return Verdict(label, tail[0].epoch,
                           f"dead gradients: D's and G's pre-clip gradient norms <= {th.dead_grad:g} for "
                           f"{th.dead_window} epochs from epoch {tail[0].epoch} (clamp zone {rec.clamp_rate:.0%} "
                           f"of outputs, D(x) {rec.d_real:.3f}, D(G(z)) {rec.d_fake:.3f}); frozen at: {why}",
                           True, {"mechanism": "dead_gradients", "clamp_rate": rec.clamp_rate,
                                  "d_real": rec.d_real, "d_fake": rec.d_fake})
        return None

    def _last_quality(self) -> Quality | None:
        return next((r.quality for r in reversed(self.history) if r.quality is not None), None)

    def final(self) -> Verdict:
        """The run's label: a sealed verdict, else the last evaluation's quality label."""
        if self.sealed is not None:
            return self.sealed
        evaluated = [r for r in self.history if r.quality is not None]
        if not evaluated:
            return Verdict("poor_quality", self.history[-1].epoch if self.history else 0,
                           "no quality evaluation was made", False)
        label, why = label_quality(evaluated[-1].quality, self.th)
        since = evaluated[-1].epoch
        for r in reversed(evaluated[:-1]):  # the label holds from the first epoch of its final streak
            if label_quality(r.quality, self.th)[0] != label:
                break
            since = r.epoch
        q = evaluated[-1].quality
        return Verdict(label, since, f"{why} (at epoch {evaluated[-1].epoch}; since epoch {since})", False,
                       {k: v for k, v in q.as_dict().items() if isinstance(v, (int, float)) and math.isfinite(v)})
