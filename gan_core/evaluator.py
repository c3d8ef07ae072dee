"""Sample quality from a small classifier trained once per data set and cached.

The classifier is a two-layer CNN; its 128-wide penultimate layer gives the features for
FLD and precision/recall, its softmax the classifier score, class coverage and class KL.
Besides the data set's K classes it has a (K+1)-th class, "not data", trained on synthetic
junk (noise of several kinds, flat grey images, smooth blobs, salt and pepper). Without it a
small CNN maps noise confidently onto some digit, and noise then looks like data to every
metric; with it, "how much of this is not data at all" is one honest number.
It trains on the data set's classifier split, is scored on the held-out split (the accuracy
is kept with the weights and shown), and is cached under `cache_dir()/evaluator`, keyed by
the data's fingerprint, so every later run and every test reuses it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import metrics, rng
from .data import Dataset, cache_dir

CLASSIFIER_VERSION = 4
CLF_EPOCHS = 8
CLF_BATCH = 128
CLF_SEED = 1234
CLF_MAX_LR = 3e-3
CLF_SHIFT = 2
"""Random translations of up to this many pixels: 8k training digits need the augmentation for 97%."""
CLF_NOISE = 0.3
"""Half of each batch's digits get speckle (up to this share of pixels) and Gaussian noise (std up to
this): GAN samples are speckled, and a classifier that never saw noise misreads their class."""
JUNK_PER_BATCH = 32
"""Synthetic non-data images added to each classifier batch, labelled K ("not data")."""
REFERENCE_SIZE = 2000
"""Real held-out images used as FLD's reference (generated sets are compared at this size)."""
MIN_SHARE_FACTOR = 0.5
"""A class is covered when it gets at least half of its uniform share of the samples."""
SUCCESS_NOISE_STD = 0.3
"""success_fld is the FLD of real held-out images with Gaussian pixel noise of this std added."""


class Classifier(nn.Module):
    """conv(32) -> pool -> conv(64) -> pool -> fc(128) = features -> fc(K + 1), the last "not data"."""

    def __init__(self, num_classes: int = 11) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass(frozen=True)
class Quality:
    """Quality of one set of samples, as the evaluator's classifier sees it."""

    fld: float
    """Fréchet distance between classifier features of the samples and of real held-out data."""
    score: float
    """Classifier score exp(E KL(p(y|x) || p(y))): 1 for one class, up to K."""
    coverage: int
    """Classes that receive at least half their uniform share of the samples."""
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

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def _as_images(x: torch.Tensor) -> torch.Tensor:
    """[N, D] or [N, H, W] pixels in [0, 1] -> [N, 1, 28, 28] float32 (the classifier's input)."""
    return x.reshape(len(x), 1, 28, 28).float()


def uint8_to_unit(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0


class Evaluator:
    """Scores generated images against a data set's held-out split."""

    def __init__(self, dataset: Dataset, device: torch.device | str = "cpu",
                 log: Callable[[str], None] | None = None, use_cache: bool = True) -> None:
        self.device = torch.device(device)
        self.num_classes = dataset.num_classes
        self.dataset_name = dataset.name
        path = cache_dir() / "evaluator" / f"{dataset.name}-{dataset.fingerprint()}-v{CLASSIFIER_VERSION}.pt"
        self.cache_path = path
        self.classifier, self.accuracy, self.trained_now = self._load_or_train(dataset, path, log, use_cache)
        self.classifier.to(self.device).eval()
        ref = uint8_to_unit(dataset.held_out_images[:REFERENCE_SIZE])
        self.ref_features, _ = self._features_probs(ref)
        self.ref_mu, self.ref_cov = metrics.mean_cov(self.ref_features)
        self.calibration = self._load_or_calibrate(dataset, use_cache)

    # -- training and caching -------------------------------------------------------------
    def _load_or_train(self, ds: Dataset, path: Path, log, use_cache: bool):
        with torch.random.fork_rng():  # a fixed init that leaves the caller's RNG alone
            torch.manual_seed(CLF_SEED)
            clf = Classifier(ds.num_classes + 1)
        if use_cache and path.is_file():
            blob = torch.load(path, map_location="cpu", weights_only=True)
            clf.load_state_dict(blob["state_dict"])
            return clf, float(blob["accuracy"]), False
        if log:
            log(f"training the evaluator's classifier for {ds.name} once (cached at {path})")
        t0 = time.perf_counter()
        with torch.random.fork_rng():
            acc = train_classifier(clf, ds, self.device)
        if log:
            log(f"evaluator classifier: {100 * acc:.2f}% held-out accuracy, trained in {time.perf_counter() - t0:.0f} s")
        if use_cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save({"state_dict": clf.state_dict(), "accuracy": acc}, tmp)
            tmp.replace(path)  # atomic: concurrent workers never read half a file
            path.with_suffix(".json").write_text(json.dumps({"dataset": ds.name, "accuracy": acc}))
        return clf, acc, True

    def _load_or_calibrate(self, ds: Dataset, use_cache: bool) -> dict[str, dict[str, float]]:
        side = self.cache_path.with_suffix(".calibration.json")
        if use_cache and side.is_file():
            return json.loads(side.read_text())
        cal = {name: self.quality(images).as_dict() for name, images in calibration_sets(ds).items()}
        if use_cache:
            tmp = side.with_suffix(".tmp")
            tmp.write_text(json.dumps(cal, indent=1))
            tmp.replace(side)
        return cal

    def thresholds(self):
        """Outcome thresholds on this evaluator's scale (success_fld from its calibration)."""
        from .outcome import Thresholds

        return Thresholds(success_fld=self.calibration["real_noisy"]["fld"], success_coverage=self.num_classes)

    # -- scoring --------------------------------------------------------------------------
    @torch.no_grad()
    def _features_probs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, probs = [], []
        for chunk in _as_images(images).split(1000):
            f = self.classifier.features(chunk.to(self.device))
            feats.append(f.cpu())
            probs.append(F.softmax(self.classifier.head(f), 1).cpu())
        return torch.cat(feats).double(), torch.cat(probs).double()

    def quality(self, images: torch.Tensor) -> Quality:
        """Quality of images with pixels in [0, 1] ([N, 784] or [N, 28, 28])."""
        images = torch.nan_to_num(images.detach().float(), nan=0.0).clamp(0, 1)
        feats, probs = self._features_probs(images)
        mu, cov = metrics.mean_cov(feats)
        k = self.num_classes
        is_junk = probs.argmax(1) == k
        data_probs = probs[:, :k] / probs[:, :k].sum(1, keepdim=True).clamp(min=1e-12)
        # Shares are of all samples: a generator that is mostly junk covers few classes.
        hist = torch.bincount(data_probs.argmax(1)[~is_junk], minlength=k).double() / len(probs)
        precision, recall = metrics.precision_recall(self.ref_features, feats)
        return Quality(
            fld=metrics.frechet_distance(mu, cov, self.ref_mu, self.ref_cov),
            score=metrics.classifier_score(data_probs),
            coverage=metrics.coverage(hist, MIN_SHARE_FACTOR / k),
            junk=float(is_junk.double().mean()),
            class_kl=metrics.kl_from_uniform(hist / hist.sum()) if hist.sum() > 0 else float(torch.tensor(k).log()),
            precision=precision,
            recall=recall,
            confidence=float(data_probs.max(1).values.mean()),
        )


def calibration_sets(ds: Dataset, n: int = REFERENCE_SIZE) -> dict[str, torch.Tensor]:
    """Reference image sets that fix the metrics' scale: real, noised real, noise, one class, untrained G."""
    gen = torch.Generator().manual_seed(CLF_SEED)
    real = uint8_to_unit(ds.clf_images[:n]).reshape(-1, ds.image_dim)
    counts = torch.bincount(ds.clf_labels)
    one = uint8_to_unit(ds.clf_images[ds.clf_labels == int(counts.argmax())][:n]).reshape(-1, ds.image_dim)
    from .config import ModelConfig
    from .models import build_models

    G, _ = build_models(ModelConfig(), ds.image_dim, 0, torch.device("cpu"), torch.float32)
    with torch.no_grad():
        untrained = G(torch.randn(n, ModelConfig().z_dim, generator=gen))
    return {
        "real": real,
        "real_noisy": (real + SUCCESS_NOISE_STD * torch.randn(real.shape, generator=gen)).clamp(0, 1),
        "gaussian_noise": (0.5 + 0.25 * torch.randn(real.shape, generator=gen)).clamp(0, 1),
        "uniform_noise": torch.rand(real.shape, generator=gen),
        "one_class": one,
        "untrained_g": untrained,
    }


def junk_images(n: int, gen: torch.Generator, side: int = 28) -> torch.Tensor:
    """n synthetic "not data" images [n, 1, side, side] in [0, 1], of five kinds in equal parts."""
    kinds = torch.arange(n) % 5
    u = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    out = torch.empty(n, 1, side, side)
    shape = (1, side, side)
    for i, kind in enumerate(kinds.tolist()):
        if kind == 0:    # Gaussian noise around a random grey
            img = u(1) * 0.6 + 0.2 + (u(1) * 0.45 + 0.05) * torch.randn(shape, generator=gen)
        elif kind == 1:  # uniform noise of random contrast
            img = u(*shape) * (u(1) * 0.7 + 0.3)
        elif kind == 2:  # flat grey with a little noise (what an untrained G draws)
            img = u(1) + 0.03 * torch.randn(shape, generator=gen)
        elif kind == 3:  # smooth blobs
            img = F.interpolate(u(1, 1, 7, 7), size=(side, side), mode="bilinear", align_corners=False)[0]
        else:            # salt and pepper
            img = (u(*shape) < u(1) * 0.45 + 0.05).float()
        out[i] = img.clamp(0, 1)
    return out


def noisy_half(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Speckle and Gaussian noise on a random half of the images (they keep their labels)."""
    n, dev = len(x), x.device
    u = lambda *shape: torch.rand(*shape, generator=gen).to(dev)  # noqa: E731
    speckled = torch.where(u(*x.shape) < u(n, 1, 1, 1) * CLF_NOISE, u(*x.shape), x)
    noised = (speckled + u(n, 1, 1, 1) * CLF_NOISE * torch.randn(x.shape, generator=gen).to(dev)).clamp(0, 1)
    return torch.where(u(n, 1, 1, 1) < 0.5, noised, x)


def train_classifier(clf: Classifier, ds: Dataset, device: torch.device) -> float:
    """Train on the classifier split plus junk, with a fixed seed; return held-out accuracy.

    The accuracy is over the held-out data only: a real image called "not data" is an error.
    """
    torch.manual_seed(CLF_SEED)
    gen = torch.Generator().manual_seed(CLF_SEED)
    junk_label = ds.num_classes
    clf.to(device).train()
    x = _as_images(uint8_to_unit(ds.clf_images)).to(device)
    y = ds.clf_labels.to(device)
    opt = torch.optim.Adam(clf.parameters(), lr=CLF_MAX_LR / 10)
    batches = -(-len(x) // CLF_BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, CLF_MAX_LR, total_steps=CLF_EPOCHS * batches)
    seed = torch.tensor([CLF_SEED])
    for epoch in range(CLF_EPOCHS):
        perm = rng.permutation(seed, (rng.STREAM_DATA, epoch), len(x))[0].to(device)
        for idx in perm.split(CLF_BATCH):
            dx, dy = torch.randint(-CLF_SHIFT, CLF_SHIFT + 1, (2,)).tolist()
            digits = noisy_half(torch.roll(x[idx], (dx, dy), (2, 3)), gen)
            xb = torch.cat([digits, junk_images(JUNK_PER_BATCH, gen).to(device)])
            yb = torch.cat([y[idx], torch.full((JUNK_PER_BATCH,), junk_label, device=device)])
            opt.zero_grad()
            F.cross_entropy(clf(xb), yb).backward()
            opt.step()
            sched.step()
    clf.eval()
    with torch.no_grad():
        xh = _as_images(uint8_to_unit(ds.held_out_images)).to(device)
        pred = torch.cat([clf(c).argmax(1) for c in xh.split(1000)])
    return float((pred.cpu() == ds.held_out_labels).double().mean())
