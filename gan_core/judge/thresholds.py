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
are 1% distinct; success_fld is SUCCESS_FLD_FACTOR times the FLD of real digits under Gaussian pixel noise of std 0.3
(`SUCCESS_SET`), read from each evaluator's own calibration. Where real runs and constructed sets
disagree, the panel of real runs labelled by eye (`gan_core.judge.panel`) decides: the bars for
legibility, junk, off-data and FLD were tuned on its tune half.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    """Where each label begins (defaults from the MNIST calibration; see the module docstring)."""

    success_fld: float = 290.0
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
    precision_min: float = 0.6
    """Digit-like needs at least this precision (real 0.90; blurred sigma 3: 0.03) ..."""
    success_legible: float = 0.5
    """... this share legible (real digits 0.94; working GANs of the panel 0.49 to 0.68: a GAN's digits are
    imperfect, and a third of junk among real digits is told by the two measures below, not by this) ..."""
    junk_max: float = 0.15
    """... at most this share called "not data" (working GANs of the panel 0.03 to 0.06; a third of scribbles
    among real digits 0.32, of arcs 0.27) ..."""
    off_data_max: float = 0.12
    """... and at most this share off the data in pixels (working GANs of the panel at most 0.03; a third of
    shapeless lumps among real digits 0.23, of arcs 0.19, of noise 0.34)."""
    fidelity_band: float = 0.05
    """A success holds until legibility or precision misses its bar by more than this (and the junk and
    off-data shares pass theirs by more than this)."""
    untrained_distinct: float = 0.05
    """A G that has not started: samples of which at most this share are distinct modes (one texture for
    every z), the texture being one of the three below (the panel's labellers' "no strokes anywhere: static,
    a faint or fuzzy speckle cloud or a flat tone"; set on the panel's tune half) ..."""
    untrained_grey: float = 0.45
    """... a flat grey field (brightness at least this; digits 0.13) ..."""
    untrained_cloud_grey_ink: float = 0.85
    """... a faint cloud: at least this share of the ink mid-grey, ..."""
    untrained_cloud_connected: float = 0.6
    """... under this share of its bright pixels joined into strokes (a repeated shape 0.6 to 0.9) ..."""
    untrained_cloud_dim: float = 0.35
    """... and dimmer than this (a grey fog with a faint repeated shape in it is that shape) ..."""
    untrained_speckle_roughness: tuple[float, float] = (0.6, 0.95)
    """... or saturated speckle: less grey ink than a cloud and a roughness in this range (one smooth shape
    repeated is below it; a few scattered dots of a dead G above it)."""
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
OFF_DATA_QUANTILE = 0.99
"""A sample is off the data when it is farther in pixels from every reference image than this quantile of
other real images' distances to their nearest reference image (1% of real digits are that far)."""
SUCCESS_SET = "real_noise_0.3"
"""success_fld is a multiple of the FLD of this constructed set: real digits under Gaussian pixel noise of
std 0.3 (a landmark every evaluator computes on its own scale) ..."""
SUCCESS_FLD_FACTOR = 2.5
"""... this multiple (293 on the shipped scale), tuned on the panel's tune half: its working GANs reach 291
there, and varied sets labelled poor or collapsed by eye start at 288 (the bar's band decides such runs:
verdicts say whether they hold whatever the bar)."""
