"""Where and in what floating-point type a run computes: shared by both engines."""

from __future__ import annotations

import torch

from .config import DTYPES, ConfigError

TORCH_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}
"""The torch type of each `dtype` a config may name (config.DTYPES)."""
assert set(TORCH_DTYPES) == set(DTYPES), "a dtype the config accepts has no torch type here"


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available; asking for cuda without a GPU is a one-line ConfigError."""
    if not (name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name} was asked for, but no CUDA GPU is available here (use --device cpu)")
    return torch.device(name)
