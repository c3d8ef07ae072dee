"""How much memory a training run asks for, estimated from its configuration before anything is allocated,
so that a configuration the machine cannot hold is refused in one line instead of failing every trial or
exhausting the machine.

The estimate is an upper bound built from the parts that grow with the configuration (a test holds it
above the peak resident memory measured for real runs, and within a few times of it):
- each member's networks: weights, gradients, the pending gradients a checkpoint keeps, the optimiser's
  slots, the average of G, and the update's temporaries (`PARAMETER_COPIES` copies in all);
- each member's activations for one batch, forward and backward (`ACTIVATION_COPIES` per layer output);
- the data set: its float tensor on the training device, and the uint8 images with the evaluator's splits;
- one evaluation: `eval_samples` through G (every layer's output at once), the classifier's features and
  the k-NN distances' blocks (`metrics.KNN_BLOCK_BYTES`, with cdist's temporaries);
- each member's history (`HISTORY_BYTES` an epoch);
- the process itself (torch, the stores' libraries, the evaluator: `BASE_BYTES`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from .config import ConfigError, RunConfig
from .cost import parameters
from .judge.metrics import KNN_BLOCK_BYTES

PARAMETER_COPIES = 10
"""Numbers held per parameter: the weight, its gradient, a pending copy of it, Adam's two moments, G's
average, and the update's temporaries (the GPU's masked Adam computes new moments and a denominator for
every member before selecting)."""
ACTIVATION_COPIES = 8
"""Numbers held per activation of one batch: each layer's output, its activation, their gradients, and
the G loop's and D's second pass."""
HISTORY_BYTES = 8192
"""One epoch's record as Python holds it (about 40 numbers and their names), with room to spare."""
BASE_BYTES = 1 << 30
"""The process before any run: torch, MLflow, Optuna and the evaluator loaded (about 0.7 GB measured)."""
FEATURE_WIDTH = 128
"""The evaluator's feature width (its classifier's penultimate layer)."""


KEYS = ("z_dim", "g_hidden", "d_hidden", "batch_size", "eval_samples", "epochs", "dtype")
"""The flat config keys an estimate reads: two configs alike in these need the same memory."""


@dataclass(frozen=True)
class Estimate:
    """A run's (or a population's) memory, by part, in bytes."""

    networks: int
    """Every member's parameters, times the copies an update holds."""
    activations: int
    """Every member's activations for one batch."""
    data: int
    """The data set as floats on the training device."""
    evaluation: int
    """One evaluation's samples through G and the classifier."""
    history: int
    """Every member's epoch records."""
    base: int = BASE_BYTES
    """The process itself."""

    @property
    def total(self) -> int:
        return self.networks + self.activations + self.data + self.evaluation + self.history + self.base


def itemsize(cfg: RunConfig) -> int:
    return 8 if cfg.dtype == "float64" else 4


def estimate(cfg: RunConfig, members: int = 1, images: int = 70_000, image_dim: int = 784) -> Estimate:
    """The memory of `members` runs of `cfg` (a population of them: one data set, one evaluation at a time)
    on a data set of `images` images of `image_dim` pixels."""
    size = itemsize(cfg)
    d_params, g_params = parameters(cfg, image_dim)
    m = cfg.model
    widths = [m.z_dim, *m.g_hidden, image_dim, m.d_hidden, 1]
    return Estimate(
        networks=members * PARAMETER_COPIES * (d_params + g_params) * size,
        activations=members * ACTIVATION_COPIES * cfg.data.batch_size * sum(widths) * size,
        data=images * image_dim * (size + 2),  # the floats, and the uint8 images with the evaluator's splits
        evaluation=cfg.budget.eval_samples * (2 * sum(widths[:4]) + FEATURE_WIDTH * 2) * 4 + 3 * KNN_BLOCK_BYTES,
        history=members * cfg.budget.epochs * HISTORY_BYTES)


def available_bytes() -> int:
    """Memory this machine can give a new run now: MemAvailable (Linux), else the physical memory, and no
    more than a cgroup (a container) still allows."""
    free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        with open("/proc/meminfo") as f:
            free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        pass
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        used = int(open("/sys/fs/cgroup/memory.current").read())
        if limit != "max":
            free = min(free, int(limit) - used)
    except (OSError, ValueError):
        pass
    return free


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def device_free(device) -> int | None:
    """A GPU's free memory now (None on a CPU, where the host's memory is the whole story)."""
    import torch

    device = torch.device(device)
    return torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None


def refuse_over(host: int, what: str, parts: str = "", device: int = 0, free: int | None = None) -> None:
    """A one-line ConfigError when `host` bytes exceed the memory this machine has available now, or `device`
    bytes a GPU's `free` memory; nothing has been allocated yet."""
    available = available_bytes()
    if host > available:
        raise ConfigError(f"{what} needs about {gib(host)} of memory{f' ({parts})' if parts else ''}; this machine "
                          f"has {gib(available)} available: use smaller widths or fewer eval_samples, epochs or members")
    if free is not None and device > free:
        raise ConfigError(f"{what} needs about {gib(device)} of GPU memory{f' ({parts})' if parts else ''}; the GPU "
                          f"has {gib(free)} free")


def split(e: Estimate, images: int, image_dim: int, on_gpu: bool) -> tuple[int, int]:
    """(host bytes, device bytes) of an estimate: on a CPU all of it is the host's; on a GPU the networks,
    activations, float data and evaluation live on the device, and the host keeps the rest (the process, the
    history, the uint8 images)."""
    if not on_gpu:
        return e.total, 0
    uint8 = 2 * images * image_dim
    device = e.networks + e.activations + e.evaluation + e.data - uint8
    return e.total - device, device


def check(configs: Sequence[RunConfig], members: int, images: int, image_dim: int = 784,
          free: int | None = None, what: str = "this run") -> Estimate:
    """The largest estimate among `configs` trained `members` at a time, refused in one line (ConfigError)
    when it exceeds the memory available (`free`: a GPU's free memory, which then holds what lives there)."""
    worst = max((estimate(c, members, images, image_dim) for c in configs), key=lambda e: e.total)
    parts = (f"networks {gib(worst.networks)}, activations {gib(worst.activations)}, evaluation "
             f"{gib(worst.evaluation)}, history {gib(worst.history)}")
    host, device = split(worst, images, image_dim, free is not None)
    refuse_over(host, what, parts, device, free)
    return worst
