"""Data sets as whole tensors (no DataLoader), and where each one comes from.

mnist:          the full 60k/10k split when it is in the cache or torchvision can download it;
                offline, the official 10k test split bundled with this package (said clearly).
mnist-10k:      the bundled 10k test split, without trying the network.
fashion-mnist:  Debian's `dataset-fashion-mnist` files, else torchvision's download.
idx:            IDX files in `data_dir` (any data set of 28x28 greyscale images in that format).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import socket
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from . import rng
from .errors import DataError

DATASETS = ("mnist", "mnist-10k", "fashion-mnist", "idx")
BUNDLED_MNIST = resources.files("gan_core") / "data_files" / "mnist"
MNIST_TRAIN_IMAGES = 60_000
"""Images in MNIST's training split, the seed's data (the bundled test split has 10,000)."""
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
IDX_IMAGES_MAGIC = 0x0803
IDX_LABELS_MAGIC = 0x0801


@dataclass(frozen=True)
class Dataset:
    """One data set: what the GAN trains on, and the classifier split the evaluator uses."""

    name: str
    """The data set's name (mnist, fashion-mnist, ...)."""
    source: str
    """One line saying which files or split are in use."""
    images: torch.Tensor
    """uint8 [N, H, W]: the images the GAN trains on (never the evaluator's reference)."""
    labels: torch.Tensor
    """int64 [N]: their labels (the GAN never sees them)."""
    clf_images: torch.Tensor
    """uint8: images the evaluator's classifier trains on."""
    clf_labels: torch.Tensor
    """int64: their labels."""
    held_out_images: torch.Tensor
    """uint8: images the classifier is scored on and the real reference for FLD."""
    held_out_labels: torch.Tensor
    """int64: their labels."""

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1

    @property
    def image_dim(self) -> int:
        return self.images.shape[1] * self.images.shape[2]

    def fingerprint(self) -> str:
        """A short hash of the pixels and labels, to key caches (e.g. the evaluator's classifier)."""
        h = hashlib.sha1()
        for t in (self.clf_images, self.clf_labels, self.held_out_images, self.held_out_labels):
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()[:12]


def cache_dir() -> Path:
    """Where downloads and trained evaluators are kept ($GAN_SWEEP_CACHE, else ~/.cache/gan-sweep)."""
    return Path(os.environ.get("GAN_SWEEP_CACHE", Path.home() / ".cache" / "gan-sweep"))


def offline() -> bool:
    """True when downloads must not be tried (GAN_SWEEP_OFFLINE=1)."""
    return os.environ.get("GAN_SWEEP_OFFLINE", "").lower() in ("1", "true", "yes")


MAX_IMAGES = 1_000_000
"""Most images (or labels) one IDX file may declare: 784 MB of 28x28 pixels, about 3 GB once the GAN's
float copy is made. A header declaring more is refused before anything is read or decompressed."""
IMAGE_SIDE = 28
"""The evaluator's classifier and the seed's models are for 28x28 greyscale images."""
MIN_IMAGES = 10
"""Fewer images than this cannot train a GAN or be split for the evaluator."""
TEN_CLASS = ("mnist", "fashion-mnist")
"""Data set names with ten classes, labelled 0 to 9 (the shipped MNIST evaluator has ten outputs and "not data")."""
MAX_CLASSES = 100
"""Most classes an IDX data set of one's own may have (its classifier gets one output per class)."""


def _open_idx(path: Path):
    """The file, decompressing as it is read when it is gzipped (never decompressed whole)."""
    f = open(path, "rb")
    if f.read(2) == b"\x1f\x8b":
        f.close()
        return gzip.open(path, "rb")
    f.seek(0)
    return f


def read_idx(path: Path | os.PathLike, expected_magic: int, max_items: int = MAX_IMAGES) -> torch.Tensor:
    """An IDX file (optionally gzipped) as a uint8 tensor. The header is read first: a declared size beyond
    `max_items` items of IMAGE_SIDE x IMAGE_SIDE is refused before any data is read, and no more than the
    header declares (plus one byte, to tell a longer file) is ever decompressed."""
    path = Path(path)
    ndim = expected_magic & 0xFF
    try:
        with _open_idx(path) as f:
            head = f.read(4)
            if len(head) < 4 or int.from_bytes(head, "big") != expected_magic:
                raise DataError(f"corrupt IDX file {path}: bad magic number")
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise DataError(f"corrupt IDX file {path}: truncated header")
            dims = [int.from_bytes(raw_dims[4 * i: 4 * i + 4], "big") for i in range(ndim)]
            count = math.prod(dims)
            limit = max_items * (IMAGE_SIDE * IMAGE_SIDE if ndim > 1 else 1)
            if count > limit:
                raise DataError(f"IDX file {path} declares {'x'.join(map(str, dims))} = {count:,} bytes; gan-sweep reads "
                                f"at most {max_items:,} items ({limit:,} bytes) per file")
            data = bytearray(count)
            got = 0
            while got < count and (n := f.readinto(memoryview(data)[got:])):
                got += n
            extra = f.read(1)
    except FileNotFoundError:
        raise DataError(f"missing data file: {path}") from None
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"cannot read {path}: {' '.join(str(exc).split())}") from None
    if got != count or extra:
        found = f"{got}" if got < count else f"more than {count}"
        raise DataError(f"corrupt IDX file {path}: header says {count} bytes of data, found {found}")
    if count == 0:
        raise DataError(f"IDX file {path} holds no data (dimensions {'x'.join(map(str, dims))})")
    return torch.frombuffer(data, dtype=torch.uint8).view(*dims)


def _read_pair(images: Path, labels: Path) -> tuple[torch.Tensor, torch.Tensor]:
    x = read_idx(images, IDX_IMAGES_MAGIC)
    y = read_idx(labels, IDX_LABELS_MAGIC).long()
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{images} has {x.shape[0]} images but {labels} has {y.shape[0]} labels")
    if tuple(x.shape[1:]) != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(f"{images} holds {'x'.join(map(str, x.shape[1:]))} images; gan-sweep needs "
                        f"{IMAGE_SIDE}x{IMAGE_SIDE} greyscale images")
    if x.shape[0] < MIN_IMAGES:
        raise DataError(f"{images} holds {x.shape[0]} images; at least {MIN_IMAGES} are needed")
    return x, y


def check_labels(ds: Dataset) -> Dataset:
    """A data set's labels fit its classifier: 0 to 9 for the ten-class sets, else 0 to MAX_CLASSES - 1 with
    at least two classes; every split labelled within the classes the training split has."""
    ten = ds.name in TEN_CLASS
    high = 9 if ten else MAX_CLASSES - 1
    for what, labels in (("", ds.labels), (" (classifier split)", ds.clf_labels), (" (held-out split)", ds.held_out_labels)):
        low_seen, high_seen = int(labels.min()), int(labels.max())
        if low_seen < 0 or high_seen > high:
            raise DataError(f"{ds.source}: labels{what} run from {low_seen} to {high_seen}; "
                            f"{ds.name} needs labels from 0 to {high}")
    if ds.held_out_labels.max() > ds.labels.max() or ds.clf_labels.max() > ds.labels.max():
        raise DataError(f"{ds.source}: the held-out or classifier split has a label the training split lacks")
    if len(ds.labels.unique()) < 2:
        raise DataError(f"{ds.source}: every label is {int(ds.labels[0])}; the evaluator needs at least two classes")
    if ten and len(ds.labels.unique()) < 10:  # its evaluator has ten outputs (MNIST's ships with them)
        missing = sorted(set(range(10)) - set(ds.labels.unique().tolist()))
        raise DataError(f"{ds.source}: no image is labelled {', '.join(map(str, missing))}; {ds.name} needs all ten "
                        f"classes 0 to 9")
    return ds


def _find(folder: Path, prefix: str, kind: str) -> Path | None:
    for name in (f"{prefix}-{kind}", f"{prefix}-{kind}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _from_folder(name: str, folder: Path, describe: str) -> Dataset:
    """Read train-/t10k- IDX pairs from a folder; with only one split, hold out 20% of it."""
    if not folder.is_dir():
        raise DataError(f"data dir not found: {folder}")
    pairs = {}
    for prefix in ("train", "t10k"):
        img, lab = _find(folder, prefix, "images-idx3-ubyte"), _find(folder, prefix, "labels-idx1-ubyte")
        if img and lab:
            pairs[prefix] = _read_pair(img, lab)
        elif img or lab:
            raise DataError(f"missing data file in {folder}: {prefix}-images-idx3-ubyte[.gz] needs "
                            f"{prefix}-labels-idx1-ubyte[.gz] beside it")
    if not pairs:
        raise DataError(f"no IDX files in {folder} (expected train-images-idx3-ubyte[.gz] and "
                        f"train-labels-idx1-ubyte[.gz], or the t10k- pair)")
    if len(pairs) == 2:
        (xt, yt), (xh, yh) = pairs["train"], pairs["t10k"]
        return Dataset(name, f"{describe}: train {len(xt)}, test {len(xh)}", xt, yt, xt, yt, xh, yh)
    (prefix, (x, y)), = pairs.items()
    return _one_split(name, f"{describe}: {prefix} split only, {len(x)} images", x, y)


def _one_split(name: str, source: str, x: torch.Tensor, y: torch.Tensor) -> Dataset:
    """A single split is divided once, by a fixed permutation: 80% that the GAN and the classifier train
    on, and 20% held out from both, which the evaluator compares samples against (FLD, precision, recall):
    the judge's reference is never part of the GAN's training data."""
    perm = rng.permutation(torch.tensor([0]), (rng.STREAM_SPLIT,), len(x))[0]
    cut = int(0.8 * len(x))
    clf, held = perm[:cut], perm[cut:]
    x_train, y_train = x[clf], y[clf]  # one tensor: the GAN's images are the classifier's
    return Dataset(name, f"{source}; the GAN trains on {cut:,} of them, {len(x) - cut:,} held out for the judge",
                   x_train, y_train, x_train, y_train, x[held], y[held])


def _torchvision_download(cls_name: str) -> Path | None:
    """Download with torchvision into the cache; None (never an exception) when that fails."""
    import torchvision

    root = cache_dir() / "torchvision"
    cls = getattr(torchvision.datasets, cls_name)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)  # an unreachable mirror must not hang the command
    try:
        ds = cls(str(root), train=True, download=True)
        cls(str(root), train=False, download=True)
        return Path(ds.raw_folder)
    except Exception:  # noqa: BLE001 - any failure means: use the fallback
        return None
    finally:
        socket.setdefaulttimeout(old)


def _cached_raw(cls_name: str) -> Path | None:
    folder = cache_dir() / "torchvision" / cls_name / "raw"
    ok = _find(folder, "train", "images-idx3-ubyte") and _find(folder, "t10k", "labels-idx1-ubyte")
    return folder if ok else None


def bundled_mnist() -> Dataset:
    """The official MNIST test split shipped with this package (CC BY-SA 3.0, LeCun et al.)."""
    with resources.as_file(BUNDLED_MNIST) as folder:
        x, y = _read_pair(folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")
    return _one_split("mnist", "MNIST official 10k test split, bundled (offline fallback; "
                      "the 60k training split needs internet once)", x, y)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Resolve a data set by name (see the module docstring), its labels checked, or raise a one-line
    DataError."""
    return check_labels(_load(name, data_dir))


def _load(name: str, data_dir: str | os.PathLike | None) -> Dataset:
    if data_dir is not None:
        return _from_folder("idx" if name == "idx" else name, Path(data_dir), f"IDX files in {data_dir}")
    if name == "idx":
        raise DataError("dataset idx needs a data dir (--data-dir)")
    if name == "mnist-10k":
        return bundled_mnist()
    if name == "mnist":
        folder = _cached_raw("MNIST") or (None if offline() else _torchvision_download("MNIST"))
        if folder is None:
            return bundled_mnist()
        return _from_folder("mnist", folder, "MNIST via torchvision")
    if name == "fashion-mnist":
        if DEBIAN_FASHION.is_dir():
            return _from_folder(name, DEBIAN_FASHION, f"Fashion-MNIST from Debian ({DEBIAN_FASHION})")
        folder = _cached_raw("FashionMNIST") or (None if offline() else _torchvision_download("FashionMNIST"))
        if folder is None:
            raise DataError("fashion-mnist not found: install Debian's dataset-fashion-mnist "
                            "(apt-get install dataset-fashion-mnist) or go online once")
        return _from_folder(name, folder, "Fashion-MNIST via torchvision")
    raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


def to_training_tensor(images: torch.Tensor, *, g_output: str, device: torch.device,
                       dtype: torch.dtype) -> torch.Tensor:
    """uint8 [N, H, W] -> [N, H*W] floats on `device`, in G's output range ([-1, 1] for tanh, else [0, 1])."""
    x = images.to(device=device).reshape(len(images), -1).to(dtype).div_(255.0)  # in place: one float copy,
    return x.mul_(2).sub_(1) if g_output == "tanh" else x  # not three (3 GB each for a million images)
