"""Where the evaluator's weights come from: shipped for MNIST, trained once and cached for other data.

MNIST (`mnist` and `mnist-10k`): one fixed set of weights ships in the package
(`data_files/evaluator/mnist-v<version>.pt`) beside its record (`.json`: held-out accuracy, the
weights' SHA-256, the torch version and machine that trained them, and the quality of every
constructed set, which fixes the scale). The checksum is verified on every load, and a file that
does not match is a one-line EvaluatorError. As FID ships one Inception network, every user, CI
and GPU machine then scores on one scale, and the first run starts at once.

    python -m gan_core.judge.ship              # retrain (deterministic) and rewrite both files
    python -m gan_core.judge.ship --calibrate  # recompute only the record's calibration

Other data sets train the classifier on first use and cache it under `cache_dir()/evaluator`,
keyed by the data's fingerprint; concurrent processes train it once (a file lock) and a cached file
that cannot be read (truncated, corrupt, another version) is trained again.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from ..data import DataError, Dataset, bundled_mnist, cache_dir
from ..files import make_dir, open_lock, write_atomic
from .classifier import CLASSIFIER_VERSION, Classifier, new_classifier, train_classifier

SHIPPED_DIR = resources.files("gan_core") / "data_files" / "evaluator"
SHIPPED_DATASETS = ("mnist",)
"""Data set names (Dataset.name; mnist-10k is named mnist) that use the shipped weights."""


class EvaluatorError(DataError):
    """The evaluator's weights are missing or do not match their record; the message is one line."""


@dataclass(frozen=True)
class Weights:
    """A classifier's weights and what is known about them."""

    classifier: Classifier
    """The network, weights loaded."""
    accuracy: float
    """Held-out accuracy recorded when it was trained."""
    source: str
    """One line: shipped (with its checksum), cached, or trained now."""
    trained_now: bool
    """True when this process trained it."""
    path: Path
    """The weights file."""
    calibration: dict[str, dict[str, float]] | None
    """Quality of every constructed set, when known (shipped or cached)."""
    shipped: bool = False
    """True for the package's own weights (their calibration lives in their record)."""

    def save_calibration(self, calibration: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        """Cache a freshly computed calibration beside cached weights (never beside shipped ones)."""
        if not self.shipped:
            write_atomic(_calibration_path(self.path), json.dumps(calibration, indent=1).encode())
        return calibration


def shipped_paths(name: str = "mnist") -> tuple[Path, Path]:
    """The shipped weights file and its record."""
    with resources.as_file(SHIPPED_DIR) as folder:
        stem = Path(folder) / f"{name}-v{CLASSIFIER_VERSION}"
        return stem.with_suffix(".pt"), stem.with_suffix(".json")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reference_images(ds: Dataset) -> torch.Tensor:
    """The real images FLD compares against: for MNIST always the bundled split's held-out part, so
    the scale does not depend on which MNIST files a machine has."""
    return bundled_mnist().held_out_images if ds.name in SHIPPED_DATASETS else ds.held_out_images


def load_weights(ds: Dataset, device: torch.device, log: Callable[[str], None] | None = None,
                 use_cache: bool = True) -> Weights:
    if ds.name in SHIPPED_DATASETS:
        return load_shipped(ds.name, ds.num_classes)
    return _load_or_train(ds, device, log, use_cache)


def load_shipped(name: str, num_classes: int) -> Weights:
    """The shipped weights, checked against their record."""
    weights, record_path = shipped_paths(name)
    try:
        record = json.loads(record_path.read_text())
        actual = sha256(weights)
    except (OSError, ValueError) as exc:
        raise EvaluatorError(f"the shipped evaluator for {name} cannot be read ({type(exc).__name__}: {exc}); "
                             f"reinstall gan-sweep") from None
    if actual != record.get("sha256"):
        raise EvaluatorError(f"the shipped evaluator {weights} is corrupt (SHA-256 {actual[:12]}..., its record says "
                             f"{str(record.get('sha256'))[:12]}...); reinstall gan-sweep or run "
                             f"python -m gan_core.judge.ship")
    clf = new_classifier(num_classes)
    clf.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return Weights(clf, float(record["accuracy"]), f"shipped weights {weights.name} (SHA-256 {actual[:12]})",
                   False, weights, record.get("calibration"), shipped=True)


def _calibration_path(weights: Path) -> Path:
    return weights.with_suffix(".calibration.json")


def check_calibration(obj) -> dict[str, dict[str, float]]:
    """A calibration as JSON holds it: {set name: {metric: number}}; anything else is a ValueError."""
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(v, dict) and v and all(isinstance(x, int | float) for x in v.values()) for v in obj.values()):
        raise ValueError("not a calibration")
    return obj


def _read_cached(path: Path, num_classes: int) -> Weights | None:
    """Cached weights, or None when there are none or they cannot be used (then they are retrained)."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        clf = new_classifier(num_classes)
        clf.load_state_dict(blob["state_dict"])
        accuracy = float(blob["accuracy"])
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - truncated, corrupt, another layout: train again
        return None
    try:
        calibration = check_calibration(json.loads(_calibration_path(path).read_text()))
    except (OSError, ValueError):
        calibration = None  # recomputed when asked for
    return Weights(clf, accuracy, f"cached weights {path}", False, path, calibration)


def _load_or_train(ds: Dataset, device: torch.device, log, use_cache: bool) -> Weights:
    path = cache_dir() / "evaluator" / f"{ds.name}-{ds.fingerprint()}-v{CLASSIFIER_VERSION}.pt"
    if not use_cache:
        clf, acc, _ = train_weights(ds, device, log, path)
        return Weights(clf, acc, "trained now (not cached)", True, path, None)
    make_dir(path.parent)
    lock = open_lock(path.with_suffix(".lock"))  # never through a link, never truncated
    try:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # several processes starting together: one trains, the rest wait
        cached = _read_cached(path, ds.num_classes)
        if cached is not None:
            return cached
        clf, acc, _ = train_weights(ds, device, log, path)
        buf = io.BytesIO()
        torch.save({"state_dict": clf.state_dict(), "accuracy": acc}, buf)
        write_atomic(path, buf.getvalue())
        _calibration_path(path).unlink(missing_ok=True)  # a calibration of older weights is stale
    finally:
        if lock is not None:
            os.close(lock)
    return Weights(clf, acc, f"trained now, cached at {path}", True, path, None)


def train_weights(ds: Dataset, device: torch.device, log, path: Path) -> tuple[Classifier, float, float]:
    if log:
        log(f"training the evaluator's classifier for {ds.name} once (cached at {path})")
    clf = new_classifier(ds.num_classes)
    t0 = time.perf_counter()
    with torch.random.fork_rng():
        acc = train_classifier(clf, ds, device)
    seconds = time.perf_counter() - t0
    if log:
        log(f"evaluator classifier: {100 * acc:.2f}% held-out accuracy, trained in {seconds:.0f} s")
    return clf.cpu(), acc, seconds
