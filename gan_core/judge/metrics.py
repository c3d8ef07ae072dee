"""Sample-quality metrics computed from a classifier's features and class probabilities.

No Inception network (nothing can be downloaded at run time): a small classifier trained on
the data set itself supplies the features. Hence FLD, not FID: the same Fréchet distance, on
another network's features, so its numbers are not on FID's scale.
"""

from __future__ import annotations

import math

import torch

from ..config import KNN_K


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1 C2)^1/2), in float64.

    tr((C1 C2)^1/2) is the sum of the square roots of the eigenvalues of C1^1/2 C2 C1^1/2,
    which is symmetric, so `eigh` is enough (no general matrix square root needed).
    """
    mu1, cov1, mu2, cov2 = (t.double() for t in (mu1, cov1, mu2, cov2))
    vals, vecs = torch.linalg.eigh(cov1)
    sqrt1 = (vecs * vals.clamp(min=0).sqrt()) @ vecs.T
    middle = torch.linalg.eigvalsh(sqrt1 @ cov2 @ sqrt1)
    tr_sqrt = middle.clamp(min=0).sqrt().sum()
    d = (mu1 - mu2).square().sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * tr_sqrt
    return float(d)


def mean_cov(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    f = features.double()
    return f.mean(0), torch.cov(f.T)


def classifier_score(probs: torch.Tensor) -> float:
    """exp(E_x KL(p(y|x) || p(y))): the Inception-score analogue (1 = one class, K = ideal)."""
    p = probs.double().clamp(min=1e-12)
    marginal = p.mean(0, keepdim=True)
    return float(torch.exp((p * (p.log() - marginal.log())).sum(1).mean()))


def coverage(hist: torch.Tensor, min_share: float) -> int:
    """How many classes receive at least `min_share` of the samples."""
    return int((hist >= min_share).sum())


def kl_from_uniform(hist: torch.Tensor) -> float:
    """KL(histogram || uniform) in nats: 0 for balanced classes, log K for a single class."""
    k = len(hist)
    h = hist[hist > 0]
    return float((h * (h * k).log()).sum())


KNN_BLOCK_BYTES = 64 << 20
"""Most bytes of distances held at once: k-NN and manifold tests walk the rows in blocks of this size, so
memory stays flat whatever the set's size (20,000 samples against themselves would be 3.2 GB at once).
A set of up to 2,896 rows against as many is one block, computed exactly as in a single pass."""


def _blocks(rows: int, cols: int) -> list[slice]:
    """Row blocks holding at most KNN_BLOCK_BYTES of float64 distances against `cols` columns."""
    step = max(1, KNN_BLOCK_BYTES // (8 * max(cols, 1)))
    return [slice(start, start + step) for start in range(0, rows, step)]


def knn_radii(x: torch.Tensor, k: int = KNN_K) -> torch.Tensor:
    """Each row's distance to its k-th nearest other row (float64): the k-NN balls of `precision_recall`."""
    x = x.double()
    out = torch.empty(len(x), dtype=torch.float64)
    for rows in _blocks(len(x), len(x)):
        # +1: each point is its own nearest neighbour. topk, not kthvalue: the same selected value, 6x faster
        # on 2,000 rows, and it runs once per scored set.
        out[rows] = torch.cdist(x[rows], x).topk(k + 1, dim=1, largest=False).values[:, k]
    return out


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = KNN_K,
                     real_radii: torch.Tensor | None = None) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al., 2019) on feature vectors.

    Precision: the share of fake samples inside some real sample's k-NN ball (do the samples
    look like data?). Recall: the share of real samples inside some fake sample's k-NN ball
    (is all of the data covered?). `real_radii`: `knn_radii(real, k)` when the caller keeps it (an
    evaluator scores every set against the same real features).
    """
    real, fake = real.double(), fake.double()
    r_real = knn_radii(real, k) if real_radii is None else real_radii
    r_fake = knn_radii(fake, k)
    inside = torch.zeros(len(fake), dtype=torch.bool)   # fake row i in some real ball
    covered = torch.zeros(len(real), dtype=torch.bool)  # real row j in some fake ball
    for rows in _blocks(len(fake), len(real)):
        d = torch.cdist(fake[rows], real)  # [a block of fake, n_real]
        inside[rows] = (d <= r_real[None, :]).any(1)
        covered |= (d <= r_fake[rows, None]).any(0)
    return float(inside.double().mean()), float(covered.double().mean())


def nearest_distances(x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Each row of x's distance to its nearest row of real (float64), a block of rows at a time."""
    x, real = x.double(), real.double()
    out = torch.empty(len(x), dtype=torch.float64)
    for rows in _blocks(len(x), len(real)):
        out[rows] = torch.cdist(x[rows], real).min(1).values
    return out


def off_data_share(pixels: torch.Tensor, real_pixels: torch.Tensor, radius: float) -> float:
    """Share of samples farther, in pixels, from every real image than `radius`: realism judged against the
    data itself, not through the classifier (a network reads some shapeless ink as digits; the data's
    own pixels do not)."""
    return float((nearest_distances(pixels, real_pixels) > radius).double().mean()) if len(pixels) else 0.0


INK = 0.15
"""A pixel brighter than this is ink (MNIST's background is 0; a GAN's rarely is, quite)."""
BRIGHT = 0.5
"""A pixel brighter than this is a stroke's or a speckle's core."""
SATURATED = 0.85
"""Ink at least this bright is saturated; below it, mid-grey (a faint cloud's)."""


def texture(pixels: torch.Tensor) -> tuple[float, float, float]:
    """How the ink is laid down, the way the eye tells a stroke from a speckle cloud:
    connected: share of bright pixels with at least two bright 4-neighbours (a stroke's pixels have them; an
      isolated speckle has none);
    roughness: mean |pixel - its 3x3 mean| over the mean pixel (smooth strokes low; salt and pepper high);
    grey_ink: share of ink that is mid-grey (below SATURATED) rather than saturated (a faint cloud ~1)."""
    if not len(pixels):
        return 0.0, 0.0, 0.0
    x = pixels.double().reshape(-1, 1, 28, 28)
    bright = (x > BRIGHT).double()
    cross = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64).view(1, 1, 3, 3)
    joined = torch.nn.functional.conv2d(bright, cross, padding=1) >= 2
    connected = float((joined * bright).sum() / bright.sum().clamp(min=1))
    smooth = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=True)
    roughness = float((x - smooth).abs().mean() / x.mean().clamp(min=1e-6))
    ink = x > INK
    grey_ink = float((ink & (x < SATURATED)).double().sum() / ink.double().sum().clamp(min=1))
    return connected, roughness, grey_ink


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def soft_coverage(hist: torch.Tensor, full_share: float) -> float:
    """Classes present, counted softly: a class with at least `full_share` of the samples counts 1,
    one with less counts its share / full_share. A class that dips a little below its share then
    moves the count a little, not by a whole class (a hard cut flips labels between near-identical sets)."""
    return float((hist.double() / full_share).clamp(max=1.0).sum())


def distinct_share(features: torch.Tensor, radius: float) -> float:
    """Share of samples that are distinct modes: greedily, each sample farther than `radius` from
    every mode kept so far is a new mode. 1 for varied data; m/n for m images repeated."""
    near = torch.cdist(features.double(), features.double()) <= radius
    covered = torch.zeros(len(features), dtype=torch.bool)
    modes = 0
    for i in range(len(features)):
        if not covered[i]:
            modes += 1
            covered |= near[i]
    return modes / max(len(features), 1)


def mean_pairwise_distance(x: torch.Tensor) -> float:
    """Mean L2 distance between distinct pairs of rows."""
    return float(torch.pdist(x.double()).mean()) if len(x) > 1 else 0.0


def nearest_neighbour_distances(x: torch.Tensor) -> torch.Tensor:
    """Each row's distance to its nearest other row."""
    d = torch.cdist(x.double(), x.double())
    d.fill_diagonal_(math.inf)
    return d.min(1).values
