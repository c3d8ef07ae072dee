"""An evaluator's real side, kept once per weights, images, device and code.

Every evaluator compares generated sets against the same real side: 2,000 held-out digits through its
classifier, their mean and covariance, their k-NN radii, the near-duplicate distance and the pixel
spread. With the same weights, images, device, torch and code it is the same tensors on every start,
and computing it was 0.8 s of the 0.9 s an evaluator took to start on one CPU thread, paid by every
`gan-sweep run`, worker and calibration. So it is computed once and kept in the cache folder
(`cache_dir()/evaluator/reference-<digest>.pt`), named by a SHA-256 of everything it depends on: the
classifier's weights, the images, the device (a GPU's name: its kernels round differently; on a CPU the
thread count, as matrix products sum in another order with another), torch's version, and the source
of the modules that compute it. A change to any of them names another file, so a kept side is never
stale.

The file is read with `weights_only` (tensors only, nothing executed), never through a link, and
checked for the names, shapes and finiteness it must have; a file that fails (truncated, corrupt,
planted) is computed again and replaced. A cache folder that cannot be written costs only the time.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

import torch

from ..data import cache_dir
from ..files import make_dir, read_plain, write_atomic

SIDE = ("features", "mu", "cov", "radii", "duplicate_radius", "spread", "pixels", "off_data_radius")
"""The tensors a kept side holds, by name (`Evaluator._real_side` makes them)."""


def digest(model: torch.nn.Module, images: torch.Tensor, device: torch.device, code: Iterable[ModuleType]) -> str:
    """SHA-256 of everything the real side depends on."""
    h = hashlib.sha256(b"gan-sweep reference side v1\0")
    h.update(f"{torch.__version__}\0{_device_name(device)}\0{torch.get_num_threads()}\0".encode())
    for name, tensor in sorted(model.state_dict().items()):
        _tensor(h, name, tensor)
    _tensor(h, "images", images)
    for module in code:
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()


def _tensor(h, name: str, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{name} {t.dtype} {tuple(t.shape)}\0".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # flat first: a 0-d tensor has no bytes axis


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda {torch.cuda.get_device_name(device)}"
    return device.type


def path_for(key: str) -> Path:
    """Where the side named `key` is kept."""
    return cache_dir() / "evaluator" / f"reference-{key[:32]}.pt"


def kept(key: str, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The side named `key`: read back when kept and whole, else computed now and kept."""
    path = path_for(key)
    side = _read(path)
    if side is not None:
        return side
    side = compute()
    buf = io.BytesIO()
    torch.save({name: side[name].detach().cpu() for name in SIDE}, buf)
    try:
        make_dir(path.parent)
        write_atomic(path, buf.getvalue())
    except OSError:
        pass  # read-only or full: the next start computes it again
    return side


def _read(path: Path) -> dict[str, torch.Tensor] | None:
    """A kept side, or None where none is kept or what is there is not one."""
    blob = read_plain(path)
    if blob is None:
        return None
    try:
        side = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - truncated, corrupt, not a torch file: computed again
        return None
    return side if well_formed(side) else None


def well_formed(side) -> bool:
    """Whether `side` holds every tensor of a real side, in float64, shaped as they relate, and finite."""
    if not isinstance(side, dict) or set(side) != set(SIDE) or not all(isinstance(side[n], torch.Tensor) for n in SIDE):
        return False
    if any(side[n].dtype != torch.float64 or not bool(torch.isfinite(side[n]).all()) for n in SIDE):
        return False
    f = side["features"]
    if f.dim() != 2 or len(f) < 2:
        return False
    n, d = f.shape
    return (side["mu"].shape == (d,) and side["cov"].shape == (d, d) and side["radii"].shape == (n,)
            and side["duplicate_radius"].dim() == 0 and side["spread"].dim() == 0
            and side["pixels"].dim() == 2 and len(side["pixels"]) == n and side["off_data_radius"].dim() == 0)
