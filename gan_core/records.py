"""Plain records every part of gan-sweep shares: what an evaluation measured, what an epoch did,
a run's verdict and result, and what callbacks see.

They hold data and compute nothing heavy, so the evaluator, the judge, both engines, the loop and
everything in `sweeps` import them from here (and nothing that only reports or prints needs a trainer).
They import none of those: where each label begins is the judge's (`gan_core.judge.thresholds`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: records never import the code that makes them
    import torch

    from .config import RunConfig


@dataclass(frozen=True)
class Quality:
    """Quality of one set of samples, as the evaluator's classifier sees it."""

    fld: float
    """Fréchet distance between classifier features of the samples and of real held-out data."""
    score: float
    """Classifier score exp(E KL(p(y|x) || p(y))): 1 for one class, up to K."""
    coverage: int
    """Classes that receive at least half their uniform share of the samples (a hard count)."""
    junk: float
    """Share of samples the classifier calls "not data" (noise 1.0, real held-out data ~0)."""
    class_kl: float
    """KL of the predicted class histogram from uniform (nats; log K = one class)."""
    precision: float
    """Share of samples inside the real data's feature manifold (k-NN balls)."""
    recall: float
    """Share of real data inside the samples' feature manifold."""
    confidence: float
    """Mean top probability among the data classes (how sure the classifier is of each sample's class)."""
    legible: float = float("nan")
    """Share of samples read as one data class with probability >= 0.9 (real digits ~0.94)."""
    classes: float = float("nan")
    """Classes present among the legible samples, counted softly (fully from a quarter of the uniform share)."""
    distinct: float = float("nan")
    """Share of samples that are distinct modes (real ~0.99; m images repeated: m / 1000)."""
    spread: float = float("nan")
    """Mean pairwise pixel distance of the samples over that of real data (1 for data, 0 for one image)."""
    brightness: float = float("nan")
    """Mean pixel value (real digits ~0.13; a flat grey field ~0.5)."""
    off_data: float = float("nan")
    """Share of samples farther in pixels from every reference image than 99% of other real images are
    (real ~0.01; a third of shapeless lumps among real digits ~0.23; noise 1)."""
    connected: float = float("nan")
    """Share of bright pixels (> 0.5) joined to at least two bright 4-neighbours: strokes, not speckle
    (real digits ~0.9; an untrained G's static ~0.3)."""
    roughness: float = float("nan")
    """Mean |pixel - its 3x3 mean| over the mean pixel: salt-and-pepper texture (real digits ~0.35)."""
    grey_ink: float = float("nan")
    """Share of the ink (> 0.15) that is mid-grey rather than saturated: a faint cloud ~1 (real digits ~0.3)."""

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


METRIC_NAMES = {
    "step": "batches_done", "clamp_rate": "clamp_share", "weights_finite": "weights_finite_flag",
    "coverage": "classes_covered_count", "classes": "classes_present_soft_count", "junk": "not_data_share",
    "legible": "legible_share", "distinct": "distinct_share", "off_data": "off_data_share", "spread": "pixel_spread_ratio",
    "class_kl": "class_kl_nats", "score": "classifier_score",
    "d_sv_1": "d_layer1_top_singular_value", "d_sv_2": "d_layer2_top_singular_value",
    "noise_std": "instance_noise_std", "ema_distance": "g_ema_relative_distance",
}
"""Field -> metric name where the field's own name does not say its unit (MLflow, JSON summaries)."""


def PROBE(trial: dict[str, str] | None = None) -> Any:  # noqa: N802 - reads as a declaration
    """An EpochRecord field (no default): `trial` maps the Optuna attribute names it feeds to how the
    epochs reduce into each: last (the final epoch's value), sum or max (over the epochs trained)."""
    return field(metadata={"trial": trial or {}})


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did, as read from the device at its end (means are over the epoch). The catalogue
    of probes: every field is required (an engine that leaves one out fails at once, not with a quiet
    default), MLflow logs every one (`metrics`), and each field's `trial` reductions name the Optuna
    attributes a finished trial carries (`trial_attributes`), which the report reads."""

    epoch: int = PROBE()
    """1-based epoch number."""
    step: int = PROBE()
    """Batches trained so far, this epoch included."""
    loss_d: float = PROBE({"last_loss_d": "last"})
    """D's loss on a batch (real term + fake term, the seed's tmp_loss); log 4 at equilibrium."""
    loss_g: float = PROBE({"last_loss_g": "last"})
    """The loss G minimised, over its steps (NaN when G never trained this epoch)."""
    d_real: float = PROBE({"last_d_real": "last"})
    """Mean D(x) on real data."""
    d_fake: float = PROBE({"last_d_fake": "last"})
    """Mean D(G(z)) on fakes, at D's fake step."""
    clamp_rate: float = PROBE({"last_clamp_rate": "last"})
    """Share of D outputs in the clamp's dead zone (where the clamp fires, or would)."""
    grad_d: float = PROBE()
    """Mean pre-clip global L2 norm of D's gradient, over D updates."""
    grad_d_max: float = PROBE({"last_grad_d_max": "last", "grad_d_peak": "max"})
    """Largest pre-clip norm of D's gradient."""
    grad_g: float = PROBE()
    """Mean pre-clip global L2 norm of G's gradient, over G updates (0 without G steps)."""
    grad_g_max: float = PROBE({"last_grad_g_max": "last"})
    """Largest pre-clip norm of G's gradient."""
    frozen_grad_d: float = PROBE({"last_frozen_grad_d": "last"})
    """Mean norm of the gradient D received while G trained (0 when requires_grad_(False) froze it)."""
    frozen_grad_g: float = PROBE({"last_frozen_grad_g": "last"})
    """Mean norm of the gradient G received while D trained on fakes (wasted compute)."""
    leak_d: float = PROBE({"last_leak_d": "last"})
    """Mean norm of stale gradient already in D's .grad when D's own backward began."""
    leak_g: float = PROBE({"last_leak_g": "last"})
    """Mean norm of stale gradient already in G's .grad when G's own backward began."""
    g_steps: int = PROBE({"g_steps": "sum"})
    """G updates this epoch."""
    g_batches: int = PROBE()
    """Batches on which G trained at least once."""
    g_capped: int = PROBE({"g_capped": "sum"})
    """Batches on which the adaptive inner G loop stopped at its cap."""
    nonfinite: int = PROBE()
    """Non-finite losses and gradient norms seen this epoch (0 in a healthy run)."""
    weights_finite: bool = PROBE()
    """All weights of D and G finite at the epoch's end."""
    batches: int = PROBE()
    """Batches this epoch."""
    seconds: float = PROBE()
    """Training time of the epoch (evaluation excluded)."""
    samples_per_s: float = PROBE()
    """Real images through D per second."""
    d_sv_1: float = PROBE({"last_d_sv_1": "last"})
    """Largest singular value of D's first weight as D uses it, at the epoch's end (~1 under spectral norm)."""
    d_sv_2: float = PROBE({"last_d_sv_2": "last"})
    """Largest singular value of D's last weight as D uses it, at the epoch's end (~1 under spectral norm)."""
    r1_penalty: float = PROBE({"last_r1_penalty": "last"})
    """Mean R1 penalty gamma / 2 * |grad_x D(x)|^2 added to D's real loss (0 when off)."""
    real_target: float = PROBE({"last_real_target": "last"})
    """D's target on real data (1 - label_smoothing)."""
    noise_std: float = PROBE({"last_noise_std": "last"})
    """Std of the instance noise on D's inputs this epoch (0 when off)."""
    ema_distance: float = PROBE({"last_ema_distance": "last"})
    """|G - average of G| / |G| over G's weights at the epoch's end (0 without an average)."""
    g_hung_bound: int = PROBE({"g_hung": "sum"})
    """Batches on which the uncapped inner G loop reached g_loop_bound steps (the run is then hung)."""
    g_hung_zero: int = PROBE({"g_hung": "sum"})
    """Batches on which G's gradient stayed exactly zero inside the uncapped inner loop (hung)."""
    g_phase_max: int = PROBE({"g_phase_max": "max"})
    """Most G steps taken on one batch this epoch (the inner loop's longest run)."""
    quality: Quality | None = None
    """Sample quality, on evaluation epochs."""

    def metrics(self) -> dict[str, float]:
        """Numeric fields under names that say their unit (quality with a q_ prefix), e.g. for MLflow."""
        out = {METRIC_NAMES.get(f.name, f.name): float(getattr(self, f.name)) for f in dataclasses.fields(self)
               if f.name not in ("epoch", "quality")}
        if self.quality is not None:
            out.update({f"q_{METRIC_NAMES.get(k, k)}": float(v) for k, v in self.quality.as_dict().items()})
        return out

    @property
    def diverged(self) -> bool:
        return self.nonfinite > 0 or not self.weights_finite

    @property
    def hung(self) -> bool:
        """The uncapped inner G loop was judged never to return on some batch of this epoch."""
        return self.g_hung_bound > 0 or self.g_hung_zero > 0


@dataclass(frozen=True)
class Verdict:
    """A run's label, when it was decided, and why."""

    label: str
    """One of the judge's labels (`gan_core.judge.labels.LABELS`)."""
    epoch: int
    """The epoch at which the label was decided (for final labels: from which it held to the end)."""
    evidence: str
    """One sentence: which signal crossed which threshold."""
    sealed: bool
    """Decided before the end of training: nothing later can change it, so the run may stop."""
    signals: dict[str, Any] = field(default_factory=dict)
    """The numbers behind the evidence."""


@dataclass(frozen=True)
class EpochEvent:
    """What callbacks see after each epoch."""

    record: EpochRecord
    """The epoch's signals (and quality, on evaluation epochs)."""
    verdict: Verdict | None
    """The sealed verdict, if the run's fate is now sealed."""
    samples: torch.Tensor | None
    """GRID_SAMPLES images [N, 1, H, W] in [0, 1] from fixed noise, on evaluation epochs."""
    epochs: int
    """The run's planned number of epochs."""
    final: bool = False
    """The run's last epoch: its budget's end, or a sealed fate that stops it (a callback may still stop it
    at any epoch; that is not known here)."""


Callback = Callable[[EpochEvent], "bool | None"]
"""Called after every epoch; returning True stops the run (a study's pruner acts through `gan_core.loop.Stopper`)."""


@dataclass(frozen=True)
class RunResult:
    """A finished run."""

    config: RunConfig
    """The configuration it ran."""
    history: list[EpochRecord]
    """One record per epoch trained."""
    verdict: Verdict
    """The outcome label, its epoch and evidence."""
    quality: Quality | None
    """The last quality evaluation."""
    samples: torch.Tensor | None
    """The last image grid's samples."""
    seconds: float
    """Wall-clock time, evaluation included."""
    device: str
    """The device it trained on."""
    dataset_source: str
    """Which data was used (e.g. the bundled 10k split)."""
    stopped_early: bool
    """True when the run stopped before its last epoch (sealed fate or a callback)."""
    resumed_from: int = 0
    """Epochs restored from a checkpoint (0: trained from scratch)."""

    def summary(self) -> dict:
        """A JSON-ready summary."""
        return {
            "config": self.config.to_flat(),
            "outcome": self.verdict.label,
            "outcome_epoch": self.verdict.epoch,
            "evidence": self.verdict.evidence,
            "sealed": self.verdict.sealed,
            "quality": self.quality.as_dict() if self.quality else None,
            "epochs_trained": len(self.history),
            "stopped_early": self.stopped_early,
            "resumed_from": self.resumed_from,
            "seconds": self.seconds,
            "device": self.device,
            "dataset": self.dataset_source,
            "history": [r.metrics() | {"epoch": r.epoch} for r in self.history],
        }


TRIAL_REDUCTIONS: dict[str, tuple[tuple[str, str], ...]] = {}
"""Optuna attribute -> the (probe, reduction) pairs it is built from, as the catalogue declares them."""
for _f in dataclasses.fields(EpochRecord):
    for _attr, _how in _f.metadata.get("trial", {}).items():
        TRIAL_REDUCTIONS[_attr] = TRIAL_REDUCTIONS.get(_attr, ()) + ((_f.name, _how),)


def trial_attributes(history: list[EpochRecord]) -> dict[str, float]:
    """A finished trial's probe attributes (the catalogue's `trial` reductions over its epochs)."""
    out = {}
    for attr, parts in TRIAL_REDUCTIONS.items():
        total = 0  # ints stay ints (step counts)
        for name, how in parts:
            values = [getattr(r, name) for r in history]
            total += values[-1] if how == "last" else sum(values) if how == "sum" else max(values)
        out[attr] = total
    return out
