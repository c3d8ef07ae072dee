"""Constructed image sets with known answers: what the outcome judge is checked against.

Each set is built from a data set's real images (never the evaluator's FLD reference) or from
scratch, deterministically from one seed, and carries the label a researcher looking at its grid
would give it. Sets whose right label is arguable carry `expected=None` and say why: the judge's
label is shown for them, never tested.

The kinds: real digits; degraded digits (blur, pixel noise, speckle, erasure) at several
strengths; a few real images repeated (memorisation); one, two and nine classes; a near-uniform
set with one class at 4%; scribbles; mixtures of real digits with scribbles, noise or blobs at several
shares (a third or more of non-digits is never a success); varied blobs and one
blob repeated; noise; an untrained G. (A G frozen by a saturated D is a training history, not a
set of images: the tests train one and check the `stalled` label.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import ModelConfig
from ..models import build_models
from .outcome import label_quality

SIZE = 2000
"""Images per set: the evaluator compares sets of this size (its FLD reference is as large)."""
SEED = 20261201


@dataclass(frozen=True)
class ConstructedSet:
    """One constructed set of images and the label a researcher would give it."""

    name: str
    """Short identifier (used in tests and the README's table)."""
    description: str
    """What the images are, in a few words."""
    expected: str | None
    """The label a researcher would give, or None where it is arguable."""
    why: str
    """Why that label (or why it is arguable)."""
    images: torch.Tensor
    """[SIZE, H*W] pixels in [0, 1]."""


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x.float().reshape(len(x), -1) / 255.0


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of [N, 784] images (separable kernel, zero padding like an empty border)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    img = x.reshape(-1, 1, 28, 28)
    img = F.conv2d(img, k.view(1, 1, 1, -1), padding=(0, radius))
    img = F.conv2d(img, k.view(1, 1, -1, 1), padding=(radius, 0))
    return img.reshape(len(x), -1)


def _bold(x: torch.Tensor) -> torch.Tensor:
    """Strokes thickened by one pixel (a 3x3 max filter)."""
    return F.max_pool2d(x.reshape(-1, 1, 28, 28), 3, stride=1, padding=1).reshape(len(x), -1)


def scribbles(n: int, gen: torch.Generator) -> torch.Tensor:
    """n images [n, 784] of 2-4 random strokes of a pen about as wide as MNIST's: digit-like ink, no digit."""
    strokes = 3
    pts = 6 + 16 * torch.rand(n, strokes + 1, 2, generator=gen)          # control points inside the box
    steps = torch.linspace(0, 1, 24)
    seg = pts[:, :-1, None, :] + (pts[:, 1:, None, :] - pts[:, :-1, None, :]) * steps[None, None, :, None]
    used = (torch.arange(strokes)[None, :] < torch.randint(2, strokes + 1, (n, 1), generator=gen))
    seg = seg.reshape(n, -1, 2)
    mask = used[:, :, None].expand(n, strokes, len(steps)).reshape(n, -1)
    grid = torch.arange(28, dtype=torch.float32)
    width = 2 * 0.9 ** 2
    # The pen is a Gaussian, so its ink at (y, x) is a row factor times a column factor, and the image is
    # the darkest point's ink: a running maximum over the points, instead of exp over a [n, P, 28, 28]
    # tensor (450 MB at n = 2000, 6.5x the time); the same images to a float32 rounding (<= 1.2e-7).
    row = torch.exp(-(grid[None, None, :] - seg[:, :, 0:1]) ** 2 / width) * mask[:, :, None]  # [n, P, 28]
    col = torch.exp(-(grid[None, None, :] - seg[:, :, 1:2]) ** 2 / width)
    ink = torch.zeros(n, 28, 28)
    for p in range(seg.shape[1]):
        torch.maximum(ink, row[:, p, :, None] * col[:, p, None, :], out=ink)
    return ink.clamp(0, 1).reshape(n, -1)


def blobs(n: int, gen: torch.Generator) -> torch.Tensor:
    """n smooth grey blobs [n, 784], each different."""
    coarse = torch.rand(n, 1, 5, 5, generator=gen)
    img = F.interpolate(coarse, size=(28, 28), mode="bicubic", align_corners=False).clamp(0, 1)
    return img.reshape(n, -1)


def _by_class(images: torch.Tensor, labels: torch.Tensor, classes: list[int], shares: list[float], n: int,
              gen: torch.Generator) -> torch.Tensor:
    """n images [n, 784] with the given class shares; a class with too few images is filled up with
    its own images shifted by one pixel (distinct images, not copies)."""
    picks = []
    counts = [round(s * n) for s in shares]
    counts[0] += n - sum(counts)
    for c, k in zip(classes, counts):
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        x = images[idx[:k]].float()
        while len(x) < k:
            more = images[idx[:k - len(x)]].float()
            dy, dx = torch.randint(-1, 2, (2,), generator=gen).tolist()
            x = torch.cat([x, torch.roll(more, (dy or 1, dx), (1, 2))])
        picks.append(x)
    out = torch.cat(picks)
    return _unit(out[torch.randperm(len(out), generator=gen)])


def build(images: torch.Tensor, labels: torch.Tensor, untrained_g: Callable[[int], torch.Tensor] | None = None,
          n: int = SIZE) -> list[ConstructedSet]:
    """Every constructed set, from real uint8 images [N, 28, 28] and their labels (N >= n)."""
    gen = torch.Generator().manual_seed(SEED)
    perm = torch.randperm(len(images), generator=gen)
    real = _unit(images[perm[:n]])
    k = int(labels.max()) + 1
    sets: list[ConstructedSet] = []

    def add(name, description, expected, why, x):
        sets.append(ConstructedSet(name, description, expected, why, x.clamp(0, 1).float()))

    add("real", "real digits", "success", "the data itself", real)
    add("real_noise_0.15", "real digits + Gaussian pixel noise (std 0.15)", "success",
        "every digit legible, a little grain", real + 0.15 * torch.randn(real.shape, generator=gen))
    add("real_noise_0.3", "real digits + Gaussian pixel noise (std 0.3)", None,
        "legible through heavy grain: where success ends on FLD alone", real + 0.3 * torch.randn(real.shape, generator=gen))
    add("real_noise_0.6", "real digits + Gaussian pixel noise (std 0.6)", "poor_quality",
        "digits drowned in noise", real + 0.6 * torch.randn(real.shape, generator=gen))
    add("blur_1_bold", "real digits blurred (sigma 1), bold strokes", None,
        "legible but soft: some would accept it, some not", _bold(_blur(real, 1.0)) * 1.3)
    add("blur_2", "real digits blurred (sigma 2)", "poor_quality", "smudges; many digits unreadable", _blur(real, 2.0) * 2.2)
    add("blur_3", "real digits blurred (sigma 3)", "poor_quality", "grey smudges", _blur(real, 3.0) * 3.5)
    speckle = torch.rand(real.shape, generator=gen) < 0.25
    add("speckle_25", "real digits, 25% of pixels replaced by random values", "poor_quality",
        "digits buried in salt and pepper", torch.where(speckle, torch.rand(real.shape, generator=gen), real))
    erased = real.clone().reshape(n, 28, 28)
    erased[:, 14:, :] = 0
    add("erased_half", "real digits with their bottom half erased", "poor_quality",
        "half digits: 1, 7 and 9 look alike", erased.reshape(n, -1))
    for m in (1, 10, 50):
        rep = real[:m].repeat(-(-n // m), 1)[:n]
        add(f"repeat_{m}", f"{m} real image{'s' if m > 1 else ''} repeated", "mode_collapse",
            "memorised: no diversity however good each image", rep)
    jitter = real[:50].repeat(-(-n // 50), 1)[:n] + 0.2 * torch.randn(real.shape, generator=gen)
    add("repeat_50_noisy", "50 real images repeated, each copy with pixel noise (std 0.2)", "mode_collapse",
        "memorised: the noise makes copies differ, not new digits", jitter)
    add("one_class", "real digits of one class", "mode_collapse", "one digit only",
        _by_class(images, labels, [1], [1.0], n, gen))
    add("two_classes", "real digits of two classes", "mode_collapse", "two digits only",
        _by_class(images, labels, [3, 8], [0.5, 0.5], n, gen))
    add("nine_classes", "real digits of nine classes (no 5)", "mode_collapse", "a whole class is missing",
        _by_class(images, labels, [c for c in range(k) if c != 5], [1 / (k - 1)] * (k - 1), n, gen))
    low = 0.04
    shares = [low] + [(1 - low) / (k - 1)] * (k - 1)
    add("one_class_at_4pct", "real digits, one class at 4% and the rest even", "success",
        "every class present; a 4% class is not a missing one", _by_class(images, labels, list(range(k)), shares, n, gen))
    scrib = scribbles(n, gen)
    add("scribbles", "random pen strokes", "poor_quality", "ink, but no digit", scrib)
    def mix(garbage: torch.Tensor, share: float) -> torch.Tensor:
        cut = round(n * share)
        return torch.cat([garbage[:cut], real[cut:]])[torch.randperm(n, generator=gen)]

    for share in (0.1, 0.25, 1 / 3, 0.5, 0.75):
        expected = "poor_quality" if share > 0.3 else None
        why = ("a third or more of the samples are not digits, whatever the rest" if share > 0.3 else
               "mostly good samples with some garbage: a matter of taste")
        add(f"mix_scribbles_{round(share * 100)}", f"real digits with {round(share * 100)}% scribbles", expected, why,
            mix(scrib, share))
    varied_blobs = blobs(n, gen)
    noise = torch.rand(real.shape, generator=gen)
    for kind, garbage in (("noise", noise), ("blobs", varied_blobs)):
        for share in (1 / 3, 0.5):
            add(f"mix_{kind}_{round(share * 100)}", f"real digits with {round(share * 100)}% {kind}", "poor_quality",
                "a third or more of the samples are not digits, whatever the rest", mix(garbage, share))
    add("blobs", "smooth grey blobs, each different", "poor_quality", "varied, but nothing like a digit", varied_blobs)
    one_blob = blobs(1, gen).repeat(n, 1) + 0.02 * torch.randn(n, 28 * 28, generator=gen)
    add("one_blob", "one grey blob repeated (faint speckle)", "mode_collapse",
        "one output for every z: a collapsed G that draws no digit", one_blob)
    add("uniform_noise", "uniform pixel noise", "poor_quality", "noise", noise)
    add("gaussian_noise", "Gaussian pixel noise around grey", "poor_quality", "noise",
        0.5 + 0.25 * torch.randn(real.shape, generator=gen))
    if untrained_g is not None:
        add("untrained_g", "an untrained G", None,
            "grey mush that varies little: noise to one reader, a collapsed G to another", untrained_g(n))
    return sets


@dataclass(frozen=True)
class Check:
    """The judge's label for one constructed set, beside the expected one."""

    set: ConstructedSet
    """The set (its images, description and expected label)."""
    quality: dict[str, float]
    """Its quality, as the evaluator scores it."""
    label: str
    """The judge's label."""
    reason: str
    """The judge's reason."""

    @property
    def agrees(self) -> bool | None:
        """True or False for a set with an expected label; None for an arguable one."""
        return None if self.set.expected is None else self.label == self.set.expected


def check(evaluator, dataset) -> list[Check]:
    """Label every constructed set of `dataset` with the judge, on `evaluator`'s scale."""
    th = evaluator.thresholds()
    rows = []
    for s in build(dataset.clf_images, dataset.clf_labels, untrained_generator(dataset)):
        q = evaluator.quality(s.images)
        rows.append(Check(s, q.as_dict(), *label_quality(q, th)))
    return rows


def untrained_generator(ds) -> Callable[[int], torch.Tensor]:
    """n samples of the seed's G at its initial weights (seed 0), pixels in [0, 1]."""
    def draw(n: int) -> torch.Tensor:
        G, _ = build_models(ModelConfig(), ds.image_dim, 0, torch.device("cpu"), torch.float32)
        with torch.no_grad():
            return G(torch.randn(n, ModelConfig().z_dim, generator=torch.Generator().manual_seed(0)))

    return draw
