"""The judge's thresholds, each declared once: where each label begins, and what the evaluator's
measures count.

`Thresholds` holds where each label begins (`gan_core.judge.outcome` reads it); the constants below it
are the cut-offs inside the evaluator's measures (`gan_core.judge.evaluator` reads them): when a sample
is legible, when a class is covered or present, when two samples are one mode, and which constructed
set fixes success_fld. Sizes that only bound the work (sets compared, samples per pass) stay with the
code that uses them.

The defaults come from the constructed sets of `gan_core.judge.constructed`, scored by the shipped
evaluator (the README's table): real digits are legible at 0.94, precise at 0.91 and distinct at
0.99; a quarter of scribbles among real digits brings legibility to 0.75; ten real images repeated
are 1% distinct; success_fld is the FLD of real digits under Gaussian pixel noise of std 0.3
(`SUCCESS_SET`), read from each evaluator's own calibration.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    """Where each label begins (defaults from the MNIST calibration; see the module docstring)."""

    success_fld: float = 160.0
    """success needs FLD at or below this (overridden by the evaluator's calibrated value)."""
    fld_band: float = 0.1
    """A success holds until FLD exceeds success_fld by more than this fraction."""
    num_classes: int = 10
    """Classes in the data set."""
    missing_classes: float = 0.7
    """Digit-like samples collapse when their soft class count is below num_classes minus this (nine
    classes: 9.0; blurred digits, one class misread down to 1.1%: 9.4) ..."""
    classes_band: float = 0.2
    """... and a diverse label holds until it is below by this much more (a class that vanishes still counts)."""
    legible_min: float = 0.5
    """Digit-like needs at least half the samples legible (real 0.94, a good GAN ~0.7; scribbles 0.16) ..."""
    precision_min: float = 0.6
    """... and at least this precision (real 0.91; blurred sigma 3: 0.36)."""
    success_legible: float = 0.72
    """success also needs this share legible: a grid where a third of the samples are not digits is no success,
    whatever the rest (real digits 0.94; a third of scribbles among them 0.69, of noise 0.63; a quarter 0.75) ..."""
    fidelity_band: float = 0.05
    """A success holds until legibility or precision misses its minimum by more than this."""
    distinct_min: float = 0.8
    """Diverse needs at least this share of distinct modes (real 0.99, blurred or noised digits 0.97;
    50 images repeated 0.05, with pixel noise on each copy 0.63) ..."""
    spread_min: float = 0.3
    """... a pixel spread of at least this (real 1; one class 0.66; one blob repeated 0.08) ..."""
    recall_min: float = 0.1
    """A success needs at least this recall (real 0.91, heavily noised real 0.38, a good GAN ~0.6)."""
    diversity_band: float = 0.05
    """A diverse label holds until distinct, spread or recall misses its minimum by more than this."""
    overpowered_loss_d: float = 0.05
    """d_overpowered: D's epoch-mean loss below this (log 4 = 1.39 at equilibrium) ..."""
    overpowered_d_fake: float = 0.01
    """... and mean D(G(z)) below this ..."""
    overpowered_window: int = 2
    """... for this many consecutive epochs."""
    dead_grad: float = 1e-12
    """stalled: the largest pre-clip norm of G's gradient at or below this, and D's too ..."""
    saturated: float = 1e-3
    """... or D(x) and D(G(z)) both within this of 1 (D calls everything real; G learns nothing) ..."""
    dead_window: int = 2
    """... for this many consecutive epochs."""

    def moved(self, stricter: bool) -> Thresholds:
        """The success bar moved by its own band, stricter or looser (a verdict that holds at both holds
        "whatever the bar"): FLD by fld_band, legibility by fidelity_band."""
        sign = 1 if stricter else -1
        return dataclasses.replace(self, success_fld=self.success_fld * (1 - sign * self.fld_band),
                                   success_legible=self.success_legible + sign * self.fidelity_band)

    @classmethod
    def from_stored(cls, stored: dict | None) -> Thresholds | None:
        """Thresholds as a study stored them (fields this version lacks are left out; None when none were)."""
        if not isinstance(stored, dict):
            return None
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in stored.items() if k in known})


# -- the evaluator's measures ---------------------------------------------------------------------

LEGIBLE_PROB = 0.9
"""A sample is legible when the classifier gives one data class at least this probability."""
MIN_SHARE_FACTOR = 0.5
"""`coverage` (the hard count) counts a class with at least half of its uniform share."""
PRESENT_SHARE_FACTOR = 0.25
"""`classes` (the soft count) counts a class fully from a quarter of its uniform share (2.5% of MNIST)."""
DUPLICATE_QUANTILE = 0.01
"""Two samples are one mode when closer in features than this quantile of real data's nearest-neighbour
distances (1% of real digits have a neighbour that close)."""
SUCCESS_SET = "real_noise_0.3"
"""success_fld is the FLD of this constructed set: real digits under Gaussian pixel noise of std 0.3."""
