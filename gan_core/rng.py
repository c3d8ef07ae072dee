"""Counter-based random numbers: a pure function of (seed, stream, step, draw, index).

Why not torch.Generator: the population engine trains many runs at once and must give each
member exactly the noise and batch order its single run would see. Per-member generators
would cost one kernel launch per member per draw; a hash of counters is one batched
computation for all members, and it is identical on CPU and GPU and in either dtype.

The hash is the well-known 32-bit integer finaliser `x ^= x >> 16; x *= 0x45d9f3b` (twice),
computed on int64 tensors holding 32-bit values; the multiplier is below 2**27, so no
product overflows int64.
"""

from __future__ import annotations

import math

import torch

_MASK = 0xFFFFFFFF
_MULT = 0x45D9F3B

# Streams keep the uses of one seed independent of each other.
STREAM_DATA = 1
STREAM_NOISE = 2
STREAM_EVAL = 3
STREAM_SPLIT = 4
STREAM_INSTANCE = 5  # instance noise on D's inputs: (step, slot) with slot 0 real, 1 fake, 1 + k G's k-th step


def _mix(x: torch.Tensor) -> torch.Tensor:
    x = ((x >> 16) ^ x) * _MULT & _MASK
    x = ((x >> 16) ^ x) * _MULT & _MASK
    return (x >> 16) ^ x


def _key(seed: torch.Tensor, *counters: int | torch.Tensor) -> torch.Tensor:
    """Fold the seed and counters into one 32-bit key per seed ([P] in, [P] out)."""
    h = _mix(seed.to(torch.int64) & _MASK ^ 0x9E3779B9)
    for c in counters:
        c = torch.as_tensor(c, dtype=torch.int64, device=seed.device)
        h = _mix(h ^ (c & _MASK))
        h = _mix(h ^ (c >> 32))
    return h


_INDEX_CACHE: dict[tuple[int, str], torch.Tensor] = {}


def _mixed_index(n: int, device: torch.device) -> torch.Tensor:
    """_mix(arange(n)): the same for every draw of a given size, so computed once."""
    key = (n, str(device))
    if key not in _INDEX_CACHE:
        if len(_INDEX_CACHE) > 64:
            _INDEX_CACHE.clear()
        _INDEX_CACHE[key] = _mix(torch.arange(n, dtype=torch.int64, device=device))
    return _INDEX_CACHE[key]


def uint32(seed: torch.Tensor, counters: tuple[int | torch.Tensor, ...], n: int) -> torch.Tensor:
    """[P, n] pseudo-random 32-bit values for the P seeds in `seed` at these counters."""
    key = _key(seed, *counters)
    return _mix(_mix(key[:, None] ^ _mixed_index(n, seed.device)[None, :]) + 0x6A09E667 & _MASK)


def normal(seed: torch.Tensor, counters: tuple[int | torch.Tensor, ...], shape: tuple[int, ...],
           dtype: torch.dtype) -> torch.Tensor:
    """[P, *shape] standard normal draws (Box-Muller on two 24-bit uniforms, in float64)."""
    n = math.prod(shape)
    bits = uint32(seed, counters, 2 * n).view(seed.shape[0], n, 2)
    u1 = ((bits[..., 0] >> 8) + 1).double() / 2.0**24  # (0, 1]: log is finite
    u2 = (bits[..., 1] >> 8).double() / 2.0**24
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return z.to(dtype).view(seed.shape[0], *shape)


def permutation(seed: torch.Tensor, counters: tuple[int | torch.Tensor, ...], n: int) -> torch.Tensor:
    """[P, n] permutations of range(n): a stable sort of hashed keys, so ties break by index."""
    keys = uint32(seed, counters, n)
    return torch.sort(keys, dim=1, stable=True).indices
