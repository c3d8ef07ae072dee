"""Reduced-precision matmuls, always chosen, never a silent default.

fp32   every matmul in float32 (the default).
bf16   matmuls under bfloat16 autocast (CPUs with AVX512-BF16, GPUs); weights, optimiser state,
       losses and the clamp stay in float32: the clamp's bound 1 - 1e-3 is 1.0 in bfloat16, which
       would turn log(1 - D) into log 0.
tf32   TensorFloat-32 matmuls on a CUDA GPU (float32 storage, 10-bit mantissa products).
"""

from __future__ import annotations

import contextlib

import torch

from .config import PRECISIONS, ConfigError

__all__ = ["PRECISIONS", "check", "matmuls"]


def check(precision: str, dtype: str, device: torch.device) -> None:
    """A one-line ConfigError for a precision this device or dtype cannot use."""
    if precision == "tf32" and device.type != "cuda":
        raise ConfigError("precision tf32 needs a CUDA GPU (use fp32 or bf16 on a CPU)")
    if precision != "fp32" and dtype != "float32":
        raise ConfigError(f"precision {precision} applies to float32 runs; dtype is {dtype}")


@contextlib.contextmanager
def matmuls(precision: str, device: torch.device):
    """Train inside this: the matmuls run at `precision`."""
    if precision == "bf16":
        # No weight cache: autocast keeps one bfloat16 copy of each weight for as long as its region
        # lasts, and a region spans many optimiser steps here (a whole epoch), so a cached copy would
        # train every forward on stale weights.
        with torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False):
            yield
    elif precision == "tf32":
        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = before
    else:
        yield
