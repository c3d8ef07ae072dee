"""How the process keeps the memory a CPU step frees: in the heap, for the next step, not back to the OS.

Why: glibc serves every allocation above its mmap threshold (128 KiB at start, raised only for blocks
it has seen freed) with a fresh mmap and unmaps it on free. A population's stacked weight gradients are
tens of MB each (lr-study's D layer: 12 x 784 x 1024 floats, 38 MB), allocated and freed on every step,
so each step touched thousands of new pages: `gan-sweep run lr-study` took 122 million minor page
faults and 15% of its CPU time in the kernel, and the batched weight-gradient product ran at half the
matmul rate (the page faults of its output were counted in its time). With freed memory kept, those
blocks are reused: the step's page faults and system time go to about nothing (`tests/test_allocator.py`,
`gan-sweep bench`). The cost: the process keeps its high-water mark of memory until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_CEILINGS = (1 << 30, 32 << 20)
"""Thresholds tried in turn: 1 GiB, then 32 MiB (the most glibc before 2.35 accepts on 64-bit)."""

_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Ask glibc to serve large blocks from its heap and never trim it; True when it agreed.

    Idempotent and process-wide; elsewhere than glibc on Linux (macOS, musl) nothing is changed."""
    global _kept
    if _kept is None:
        _kept = _set_glibc_thresholds()
    return _kept


def _set_glibc_thresholds() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # only glibc has it; musl's mallopt does nothing
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not any(mallopt(_M_MMAP_THRESHOLD, ceiling) == 1 for ceiling in _MMAP_CEILINGS):
        return False
    return mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
