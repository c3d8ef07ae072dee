"""Every run gets exactly one label, the epoch it was decided, and the evidence for it (the labels
are declared in `gan_core.judge.labels`; here, how a run earns each):

diverged       a non-finite loss, gradient norm or weight (sealed at once).
d_overpowered  D's loss ~0 and D(G(z)) ~0 for a sustained window: the seed's pitfall 3 (sealed).
stalled        training died though nothing is NaN: G's gradient exactly zero and D's too, or D
               saturated at 1 on real and fake data (the clamp's dead zone), for a window (sealed).
hung           the seed's uncapped inner G loop did not return: it reached its stated bound, or G's
               gradient stayed exactly zero inside it (sealed; the literal program never gets further).
untrained      G has not started: one texture for every z (almost no distinct modes) with no strokes
               in it: a faint speckle cloud, saturated speckle, or a flat grey field.
mode_collapse  low diversity, whatever the fidelity: few distinct modes, samples that barely
               differ, digit-like samples that miss classes, or samples close to the data that
               cover little of it (low recall).
poor_quality   varied, but not digit-like enough (too few legible samples, too many the classifier calls
               not data or that lie far from every real digit in pixels, low precision) or far from
               the data (FLD above the success threshold).
success        varied, digit-like, and FLD at or below the success threshold.

Diversity and fidelity are separate axes (see `gan_core.judge.evaluator`). The class histogram counts
as diversity only for digit-like samples (the classes a classifier assigns to smudges say nothing
about what a generator covers), and recall only for samples close to the data (any set far from
the data has low recall, however varied). Near a threshold a label holds until its
measure crosses the threshold by more than a band (hysteresis), so near-identical grids at
successive evaluations keep their label.

The thresholds (`gan_core.judge.thresholds`) come from the panel of real runs labelled by eye
(`gan_core.judge.panel`: tuned on one half, reported on the other) and the constructed sets of
`gan_core.judge.constructed`, scored by the shipped evaluator (the README's tables).
"""

from __future__ import annotations

import math

from ..records import EpochRecord, Quality, Verdict
from ..schedule import HUNG_BOUND, HUNG_ZERO, ZERO_GRADIENT_STEPS
from .thresholds import Thresholds


def _clears(value: float, minimum: float, band: float, held: bool) -> bool:
    """value >= minimum; a state already held keeps until value misses by more than band. NaN fails."""
    return value >= (minimum - band if held else minimum)


def _passes(value: float, maximum: float, band: float, held: bool) -> bool:
    """value <= maximum; a state already held keeps until value passes by more than band. NaN fails."""
    return value <= (maximum + band if held else maximum)


def _fidelity(q: Quality, th: Thresholds, held: bool) -> str | None:
    """Why the samples are not digit-like enough for a success, or None when they are."""
    if not _clears(q.legible, th.success_legible, th.fidelity_band, held):
        return (f"only {q.legible:.0%} of samples are legible (< {th.success_legible:.0%}; "
                f"{q.junk:.0%} called not-data, mean confidence {q.confidence:.2f})")
    if not _passes(q.junk, th.junk_max, th.fidelity_band, held):
        return f"{q.junk:.0%} of samples are not digits at all (the classifier's not-data; > {th.junk_max:.0%})"
    # NaN: a record made before the evaluator measured it (an older study relabelled), not a failure
    if not math.isnan(q.off_data) and not _passes(q.off_data, th.off_data_max, th.fidelity_band, held):
        return (f"{q.off_data:.0%} of samples are far from every real digit in pixels (> {th.off_data_max:.0%}; "
                f"real digits 1%)")
    if not _clears(q.precision, th.precision_min, th.fidelity_band, held):
        return f"precision {q.precision:.2f} < {th.precision_min} (samples lie off the data's manifold)"
    return None


def _diversity(q: Quality, th: Thresholds, held: bool) -> str | None:
    """Why the samples barely vary, or None when they vary."""
    if not _clears(q.distinct, th.distinct_min, th.diversity_band, held):
        return f"only {q.distinct:.1%} of samples are distinct modes (< {th.distinct_min:.0%}; real data ~99%)"
    if not _clears(q.spread, th.spread_min, th.diversity_band, held):
        return f"samples barely differ (pixel spread {q.spread:.2f} of real data's, < {th.spread_min})"
    return None


def _not_started(q: Quality, th: Thresholds) -> str | None:
    """How the samples show a G that has not started (one texture, no strokes in it), or None. NaN texture
    measures (a record made before they were measured) show none of the textures."""
    if not q.distinct <= th.untrained_distinct:
        return None
    if q.brightness >= th.untrained_grey:
        return f"a grey field (mean pixel {q.brightness:.2f} >= {th.untrained_grey}; digits ~0.13)"
    if q.grey_ink >= th.untrained_cloud_grey_ink:
        if q.connected < th.untrained_cloud_connected and q.brightness < th.untrained_cloud_dim:
            return (f"a faint cloud without strokes ({q.grey_ink:.0%} of the ink mid-grey, {q.connected:.0%} of "
                    f"its bright pixels joined into strokes)")
        return None
    low, high = th.untrained_speckle_roughness
    if low <= q.roughness <= high:
        return f"saturated speckle, no strokes (roughness {q.roughness:.2f}; digits ~0.35)"
    return None


def label_quality(q: Quality, th: Thresholds, previous: str | None = None) -> tuple[str, str]:
    """success, poor_quality, mode_collapse or untrained for one quality measurement, with the reason.

    `previous` is the label of the run's previous evaluation: the axes it had cleared keep
    clearing until a measure misses by more than its band (hysteresis)."""
    held_fid = previous == "success"
    held_div = previous in ("success", "poor_quality")
    low = _diversity(q, th, held_div)
    if low:
        blank = _not_started(q, th)
        if blank:
            return "untrained", f"G has not started: one texture for every z ({low}) and {blank} (FLD {q.fld:.1f})"
        unlike = _fidelity(q, th, held_fid)
        look = "the samples are digit-like" if unlike is None else f"the samples are not digit-like: {unlike}"
        return "mode_collapse", f"low diversity: {low}; {look} (FLD {q.fld:.1f})"
    unlike = _fidelity(q, th, held_fid)
    need = th.num_classes - th.missing_classes
    # The class count tells diversity only for digit-like samples: the class a classifier gives a smudge means nothing.
    if unlike is None and not _clears(q.classes, need, th.classes_band, held_div):
        return "mode_collapse", (f"low diversity: the samples are digit-like but cover {q.classes:.1f} of "
                                 f"{th.num_classes} classes (< {need:g}; KL from uniform {q.class_kl:.2f}; FLD {q.fld:.1f})")
    if unlike:
        return "poor_quality", f"varied but not digit-like enough: {unlike} (FLD {q.fld:.1f})"
    limit = th.success_fld * (1 + th.fld_band) if held_fid else th.success_fld
    if not q.fld <= limit:
        return "poor_quality", (f"varied and digit-like but far from the data: FLD {q.fld:.1f} > {limit:.1f} "
                                f"(legible {q.legible:.0%}, {q.classes:.1f} classes)")
    # Recall is low for any set far from the data, so it tells diversity only once the samples are close.
    if not _clears(q.recall, th.recall_min, th.diversity_band, held_div):
        return "mode_collapse", (f"low diversity: close to the data (FLD {q.fld:.1f}) and digit-like, but recall "
                                 f"{q.recall:.2f} < {th.recall_min}: they cover little of the real data")
    return "success", (f"FLD {q.fld:.1f} <= {limit:.1f}, {q.legible:.0%} legible, {q.junk:.0%} not data, "
                       f"{q.off_data:.0%} off the data, {q.classes:.1f} classes, {q.distinct:.0%} distinct, "
                       f"recall {q.recall:.2f}")


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

    def _dead(self, r: EpochRecord) -> str | None:
        """How an epoch shows dead training (None when it does not)."""
        th = self.th
        if r.diverged or r.grad_g_max > th.dead_grad:
            return None
        if r.grad_d_max <= th.dead_grad:
            return "dead_gradients"
        if min(r.d_real, r.d_fake) >= 1 - th.saturated:
            return "d_saturated"
        return None

    def wants_quality(self, rec: EpochRecord) -> bool:
        """True when `rec` would seal the run as stalled before any evaluation was made of that
        state: the trainer then evaluates now, so the evidence shows what the samples froze at."""
        tail = (self.history + [rec])[-self.th.dead_window:]
        return (rec.quality is None and len(tail) == self.th.dead_window
                and all(self._dead(r) for r in tail))

    def _tail(self, n: int) -> list[EpochRecord]:
        return self.history[-n:] if len(self.history) >= n else []

    def _sealed(self) -> Verdict | None:
        th, rec = self.th, self.history[-1]
        if rec.diverged:
            what = ("weights" if not rec.weights_finite else "losses or gradient norms")
            return Verdict("diverged", rec.epoch, f"non-finite {what} at epoch {rec.epoch} "
                           f"(loss_d {rec.loss_d}, grad_d_max {rec.grad_d_max})", True,
                           {"nonfinite": rec.nonfinite, "weights_finite": rec.weights_finite})
        if rec.hung:
            return self._hung(rec)
        tail = self._tail(th.overpowered_window)
        if tail and all(r.loss_d < th.overpowered_loss_d and r.d_fake < th.overpowered_d_fake for r in tail):
            return Verdict("d_overpowered", tail[0].epoch,
                           f"D's loss {rec.loss_d:.2g} < {th.overpowered_loss_d} and D(G(z)) {rec.d_fake:.2g} < "
                           f"{th.overpowered_d_fake} for {th.overpowered_window} epochs from epoch {tail[0].epoch}",
                           True, {"loss_d": rec.loss_d, "d_fake": rec.d_fake, "g_capped": rec.g_capped})
        tail = self._tail(th.dead_window)
        mechanisms = [self._dead(r) for r in tail]
        if tail and all(mechanisms):
            q = self._last_quality()
            frozen, why = label_quality(q, th) if q else ("unknown", "no quality measured")
            how = ("D's and G's pre-clip gradient norms are exactly zero" if mechanisms[-1] == "dead_gradients" else
                   f"G's gradient is exactly zero and D is saturated (D(x) {rec.d_real:.4f}, "
                   f"D(G(z)) {rec.d_fake:.4f})")
            return Verdict("stalled", tail[0].epoch,
                           f"training died: {how} for {th.dead_window} epochs from epoch {tail[0].epoch} "
                           f"(clamp zone {rec.clamp_rate:.0%} of outputs, D(x) {rec.d_real:.3f}, D(G(z)) "
                           f"{rec.d_fake:.3f}); the samples froze as {frozen}: {why}",
                           True, {"mechanism": mechanisms[-1], "frozen_as": frozen, "clamp_rate": rec.clamp_rate,
                                  "d_real": rec.d_real, "d_fake": rec.d_fake})
        return None

    def _hung(self, rec: EpochRecord) -> Verdict:
        why = (f"it reached its bound of {rec.g_phase_max} G steps on one batch with |log(1 - D(G(z)))| still "
               f"below the loop's threshold" if rec.g_hung_bound else
               f"G's gradient stayed exactly zero inside it for {ZERO_GRADIENT_STEPS} steps in a row "
               f"({rec.g_phase_max} steps on that batch), so G could no longer change what D sees")
        # A bound is a stated budget, not a proof: only a zero gradient shows the loop could never return. A run
        # past the bound is over budget (undecided, counted apart), not a failure of the seed's loop.
        what = "ran past its stated bound" if rec.g_hung_bound else "would never return"
        return Verdict("over_budget" if rec.g_hung_bound else "hung", rec.epoch,
                       f"the uncapped inner G loop {what} at epoch {rec.epoch}: {why} "
                       f"(D(x) {rec.d_real:.3f}, D(G(z)) {rec.d_fake:.3f}, clamp zone {rec.clamp_rate:.0%})", True,
                       {"mechanism": HUNG_BOUND if rec.g_hung_bound else HUNG_ZERO, "g_phase_max": rec.g_phase_max,
                        "d_real": rec.d_real, "d_fake": rec.d_fake})

    def _last_quality(self) -> Quality | None:
        return next((r.quality for r in reversed(self.history) if r.quality is not None), None)

    def labels(self) -> list[tuple[int, str, str]]:
        """(epoch, label, reason) of every evaluation, each judged with the previous one's label."""
        out: list[tuple[int, str, str]] = []
        for r in self.history:
            if r.quality is not None:
                out.append((r.epoch, *label_quality(r.quality, self.th, out[-1][1] if out else None)))
        return out

    def final(self) -> Verdict:
        """The run's label: a sealed verdict, else the last evaluation's quality label."""
        if self.sealed is not None:
            return self.sealed
        labels = self.labels()
        if not labels:
            return Verdict("poor_quality", self.history[-1].epoch if self.history else 0,
                           "no quality evaluation was made", False)
        last_epoch, label, why = labels[-1]
        since = last_epoch
        for epoch, lab, _ in reversed(labels[:-1]):  # the label holds from the first epoch of its final streak
            if lab != label:
                break
            since = epoch
        q = self._last_quality()
        return Verdict(label, since, f"{why} (at epoch {last_epoch}; since epoch {since})", False,
                       {k: v for k, v in q.as_dict().items() if isinstance(v, (int, float)) and math.isfinite(v)})
