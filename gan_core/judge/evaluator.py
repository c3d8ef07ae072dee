"""Sample quality from the evaluator's classifier, on two separate axes.

The classifier (`gan_core.judge.classifier`) gives each image 128 features and class probabilities
(the data's K classes and "not data"). From them, for a set of generated images:

- fidelity, do the samples look like data: `legible` (share read as one class with probability
  >= 0.9), `confidence`, `junk` (share called "not data"), `precision` (share inside the real
  data's k-NN feature manifold);
- realism against the data itself: `off_data` (share of samples farther, in pixels, from every reference
  image than 99% of other real images are: ink a classifier reads as a digit is still far from every digit);
- diversity, do they cover the data: `recall` (share of real data inside the samples' manifold),
  `classes` (classes present, counted softly), `class_kl` (the class histogram's distance from
  uniform), `distinct` (share of samples that are distinct modes at the real data's own
  near-duplicate distance), `spread` (mean pairwise pixel distance relative to real data);
- and FLD, the Fréchet distance between sample and real features (not on FID's scale).

For MNIST the weights, the FLD reference (2,000 held-out digits of the bundled split) and the
calibration ship with the package, so every machine scores on one fixed scale
(`gan_core.judge.weights`); other data sets train a classifier once and cache it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..data import Dataset, DataError
from ..records import Quality
from . import classifier, metrics, reference_cache
from . import thresholds as judge_thresholds
from .classifier import as_images, uint8_to_unit
from .constructed import SIZE as CONSTRUCTED_SIZE
from .constructed import build, untrained_generator
from .thresholds import (
    DUPLICATE_QUANTILE,
    LEGIBLE_PROB,
    MIN_SHARE_FACTOR,
    OFF_DATA_QUANTILE,
    PRESENT_SHARE_FACTOR,
    SUCCESS_FLD_FACTOR,
    SUCCESS_SET,
    Thresholds,
)
from .weights import SHIPPED_DATASETS, load_weights, reference_images

REFERENCE_SIZE = 2000
"""Real held-out images used as FLD's reference (generated sets are compared at this size)."""
DIVERSITY_SAMPLES = 1000
"""Samples used for `distinct` and `spread` (pairwise measures: O(n^2))."""
CPU_CHUNK = 128
"""Images per classifier pass on a CPU. The first convolution's output for 128 images (11 MB) stays in
the caches and for 1000 (86 MB) it does not: a pass over 2,000 images took about a third of the time
(one thread), the features the same bit for bit."""
GPU_CHUNK = 1000
"""Images per classifier pass on a GPU, where bigger passes only fill it better."""
SIDE_CODE = (classifier, metrics, judge_thresholds, sys.modules[__name__])
"""The modules whose source computes the real side (`reference_cache` names a kept side by them): the
classifier, the metrics, the thresholds (the near-duplicate distance's quantile) and this one."""


def check_data(dataset: Dataset) -> None:
    """A data set that trains its own evaluator has enough images for it (a one-line DataError, before
    anything is trained or kept): its classifier split holds the constructed sets that calibrate the
    judge, its held-out split the reference FLD compares against. The shipped MNIST evaluator brings both."""
    if dataset.name in SHIPPED_DATASETS:
        return
    for what, images, need in (("classifier", dataset.clf_images, CONSTRUCTED_SIZE),
                               ("held-out", dataset.held_out_images, REFERENCE_SIZE)):
        if len(images) < need:
            raise DataError(f"{dataset.source}: its {what} split holds {len(images):,} images; the evaluator "
                            f"needs {need:,} (a single split is divided 80/20: give at least "
                            f"{max(CONSTRUCTED_SIZE * 5 // 4, REFERENCE_SIZE * 5):,} images, or a t10k- pair)")


class Evaluator:
    """Scores generated images against a data set's held-out split."""

    def __init__(self, dataset: Dataset, device: torch.device | str = "cpu",
                 log: Callable[[str], None] | None = None, use_cache: bool = True) -> None:
        check_data(dataset)  # before anything is trained or kept
        self.device = torch.device(device)
        self.num_classes = dataset.num_classes
        self.dataset_name = dataset.name
        weights = load_weights(dataset, self.device, log, use_cache)
        self.classifier, self.accuracy, self.trained_now = weights.classifier, weights.accuracy, weights.trained_now
        self.source, self.cache_path = weights.source, weights.path
        self.classifier.to(self.device).eval()
        images = reference_images(dataset)[:REFERENCE_SIZE]
        others = dataset.clf_images[:REFERENCE_SIZE]  # real images the reference does not hold
        compute = functools.partial(self._real_side, images, others, dataset.image_dim)
        if use_cache:
            key = reference_cache.digest(self.classifier, torch.cat([images, others]), self.device, SIDE_CODE)
            side = reference_cache.kept(key, compute)
        else:
            side = compute()
        self.ref_features, self.ref_mu, self.ref_cov = side["features"], side["mu"], side["cov"]
        self.ref_radii = side["radii"]  # precision's k-NN balls: the same for every set
        self.duplicate_radius, self.ref_spread = float(side["duplicate_radius"]), float(side["spread"])
        self.ref_pixels, self.off_data_radius = side["pixels"], float(side["off_data_radius"])
        self._weights, self._dataset = weights, dataset

    def _real_side(self, images: torch.Tensor, others: torch.Tensor, image_dim: int) -> dict[str, torch.Tensor]:
        """What every set is compared against (`reference_cache.SIDE`), computed from the reference images (and,
        for `off_data`'s radius, other real images)."""
        ref = uint8_to_unit(images).reshape(-1, image_dim)
        near = metrics.nearest_distances(uint8_to_unit(others).reshape(-1, image_dim), ref)
        features, _ = self._features_probs(ref)
        mu, cov = metrics.mean_cov(features)
        sub = features[:DIVERSITY_SAMPLES]
        return {"features": features, "mu": mu, "cov": cov, "radii": metrics.knn_radii(features),
                "duplicate_radius": torch.quantile(metrics.nearest_neighbour_distances(sub), DUPLICATE_QUANTILE),
                "spread": torch.tensor(metrics.mean_pairwise_distance(ref[:DIVERSITY_SAMPLES]), dtype=torch.float64),
                "pixels": ref.double(), "off_data_radius": torch.quantile(near, OFF_DATA_QUANTILE)}

    @functools.cached_property
    def calibration(self) -> dict[str, dict[str, float]]:
        """Quality of every constructed set: shipped or cached with the weights, else computed once now."""
        cached = self._weights.calibration
        if cached is not None and "fld" in cached.get(SUCCESS_SET, {}):  # a cache without it is recomputed
            return cached
        return self._weights.save_calibration(self.calibrate(self._dataset))

    def calibrate(self, dataset: Dataset) -> dict[str, dict[str, float]]:
        """Quality of every constructed set (`gan_core.judge.constructed`): the scale's landmarks."""
        sets = build(dataset.clf_images, dataset.clf_labels, untrained_generator(dataset))
        return {s.name: self.quality(s.images).as_dict() for s in sets}

    def thresholds(self) -> Thresholds:
        """Outcome thresholds on this evaluator's scale (success_fld from its calibration)."""
        return Thresholds(success_fld=SUCCESS_FLD_FACTOR * self.calibration[SUCCESS_SET]["fld"],
                          num_classes=self.num_classes)

    # -- scoring --------------------------------------------------------------------------
    @torch.no_grad()
    def _features_probs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, probs = [], []
        for chunk in as_images(images).split(CPU_CHUNK if self.device.type == "cpu" else GPU_CHUNK):
            f = self.classifier.features(chunk.to(self.device))
            feats.append(f.cpu())
            probs.append(F.softmax(self.classifier.head(f), 1).cpu())
        return torch.cat(feats).double(), torch.cat(probs).double()

    def quality(self, images: torch.Tensor) -> Quality:
        """Quality of images with pixels in [0, 1] ([N, 784] or [N, 28, 28])."""
        images = torch.nan_to_num(images.detach().float(), nan=0.0).clamp(0, 1).reshape(len(images), -1)
        feats, probs = self._features_probs(images)
        mu, cov = metrics.mean_cov(feats)
        k = self.num_classes
        is_junk = probs.argmax(1) == k
        data_probs = probs[:, :k] / probs[:, :k].sum(1, keepdim=True).clamp(min=1e-12)
        top = data_probs.max(1).values
        legible = (top >= LEGIBLE_PROB) & ~is_junk
        # Shares are of all samples: a generator that is mostly junk covers few classes.
        hist = torch.bincount(data_probs.argmax(1)[~is_junk], minlength=k).double() / len(probs)
        # The soft count reads only legible samples: the class a classifier gives a smudge means nothing.
        legible_hist = torch.bincount(data_probs.argmax(1)[legible], minlength=k).double() / max(int(legible.sum()), 1)
        precision, recall = metrics.precision_recall(self.ref_features, feats, real_radii=self.ref_radii)
        sub = slice(0, DIVERSITY_SAMPLES)
        connected, roughness, grey_ink = metrics.texture(images)
        return Quality(
            fld=metrics.frechet_distance(mu, cov, self.ref_mu, self.ref_cov),
            score=metrics.classifier_score(data_probs),
            coverage=metrics.coverage(hist, MIN_SHARE_FACTOR / k),
            junk=float(is_junk.double().mean()),
            class_kl=metrics.kl_from_uniform(hist / hist.sum()) if hist.sum() > 0 else float(torch.tensor(k).log()),
            precision=precision,
            recall=recall,
            confidence=float(top.mean()),
            legible=float(legible.double().mean()),
            classes=metrics.soft_coverage(legible_hist, PRESENT_SHARE_FACTOR / k),
            distinct=metrics.distinct_share(feats[sub], self.duplicate_radius),
            spread=metrics.mean_pairwise_distance(images[sub]) / self.ref_spread,
            brightness=float(images.double().mean()) if len(images) else 0.0,
            off_data=metrics.off_data_share(images, self.ref_pixels, self.off_data_radius),
            connected=connected,
            roughness=roughness,
            grey_ink=grey_ink,
        )
