"""Counter-based random numbers: a pure function of (seed, stream, step, draw, index).

Why not torch.Generator: the population engine trains many runs at once and must give each
member exactly the noise and batch order its single run would see. Per-member generators
would cost one kernel launch per member per draw; a hash of counters is one batched
computation for all members, and it is identical on CPU and GPU and in either dtype.

The hash is the well-known 32-bit integer finaliser `x ^= x >> 16; x *= 0x45d9f3b` (twice).
`_mix` defines it on int64 tensors holding 32-bit values (the multiplier is below 2**27, so no
product overflows int64); the draws compute the same bits in place on int32 tensors, whose
multiply wraps modulo 2**32 (two's complement on every device torch runs on), at a third of the
cost. tests/test_rng.py holds every draw to the int64 definition bit for bit.
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
    """The finaliser on int64 tensors holding 32-bit values: the definition the fast path is held to."""
    x = ((x >> 16) ^ x) * _MULT & _MASK
    x = ((x >> 16) ^ x) * _MULT & _MASK
    return (x >> 16) ^ x


def _mix_int(x: int) -> int:
    """The finaliser on one Python int (the same bits as `_mix`)."""
    x = ((x >> 16) ^ x) * _MULT & _MASK
    x = ((x >> 16) ^ x) * _MULT & _MASK
    return (x >> 16) ^ x


def _as_int32(x: torch.Tensor) -> torch.Tensor:
    """32-bit values held in int64 -> int32 tensors with the same bits."""
    return (x - ((x >> 31) << 32)).to(torch.int32)


def _mix32_(x: torch.Tensor) -> torch.Tensor:
    """`_mix` in place on int32 tensors holding the bits: half the memory traffic of int64 and no
    masking after the multiply, whose product wraps modulo 2**32 as the finaliser wants. torch's right
    shift of int32 is arithmetic, so the 16 bits it drags in from the sign are masked off."""
    y = torch.empty_like(x)
    for last in (False, False, True):
        torch.bitwise_right_shift(x, 16, out=y)
        x ^= y.bitwise_and_(0xFFFF)
        if not last:
            x *= _MULT
    return x


def _key_tensor(seed: torch.Tensor, *counters: int | torch.Tensor) -> torch.Tensor:
    """Fold the seed and counters into one 32-bit key per seed ([P] in, [P] int64 out), on seed's device."""
    h = _mix(seed.to(torch.int64) & _MASK ^ 0x9E3779B9)
    for c in counters:
        c = torch.as_tensor(c, dtype=torch.int64, device=seed.device)
        h = _mix(h ^ (c & _MASK))
        h = _mix(h ^ (c >> 32))
    return h


def _key_host(seed: torch.Tensor, *counters: int | torch.Tensor) -> torch.Tensor:
    """`_key_tensor` in Python ints: on the CPU the ~70 one-element tensor operations of a key cost more
    than the draw they key (the reference trainer draws small batches); a GPU keeps the tensor path
    rather than wait for its seeds on the host."""
    cs = [c.tolist() if isinstance(c, torch.Tensor) else int(c) for c in counters]
    per_seed = [isinstance(c, list) for c in cs]
    out = []
    for p, s in enumerate(seed.tolist()):
        h = _mix_int(s & _MASK ^ 0x9E3779B9)
        for c, listed in zip(cs, per_seed):
            c = c[p] if listed else c
            h = _mix_int(h ^ (c & _MASK))
            h = _mix_int(h ^ (c >> 32))
        out.append(h)
    return torch.tensor(out, dtype=torch.int64)


def _key(seed: torch.Tensor, *counters: int | torch.Tensor) -> torch.Tensor:
    return _key_host(seed, *counters) if seed.device.type == "cpu" else _key_tensor(seed, *counters)


_INDEX_CACHE: dict[tuple[int, str], torch.Tensor] = {}


def _mixed_index(n: int, device: torch.device) -> torch.Tensor:
    """_mix(arange(n)) as int32 bits: the same for every draw of a given size, so computed once."""
    key = (n, str(device))
    if key not in _INDEX_CACHE:
        if len(_INDEX_CACHE) > 64:
            _INDEX_CACHE.clear()
        _INDEX_CACHE[key] = _as_int32(_mix(torch.arange(n, dtype=torch.int64, device=device)))
    return _INDEX_CACHE[key]


def _bits(seed: torch.Tensor, counters: tuple[int | torch.Tensor, ...], n: int) -> torch.Tensor:
    """[P, n] int32 tensor holding the bits of `uint32`'s values."""
    x = _as_int32(_key(seed, *counters)).to(seed.device)[:, None] ^ _mixed_index(n, seed.device)[None, :]
    _mix32_(x)
    x += 0x6A09E667  # wraps modulo 2**32, as the int64 definition's `& _MASK` does
    return _mix32_(x)


def uint32(seed: torch.Tensor, counters: tuple[int | torch.Tensor, ...], n: int) -> torch.Tensor:
    """[P, n] pseudo-random 32-bit values (int64) for the P seeds in `seed` at these counters:
    _mix(_mix(key ^ _mix(index)) + 0x6A09E667), every step modulo 2**32."""
    return _bits(seed, counters, n).to(torch.int64) & _MASK


def normal(seed: torch.Tensor, counters: tuple[int | torch.Tensor, ...], shape: tuple[int, ...],
           dtype: torch.dtype) -> torch.Tensor:
    """[P, *shape] standard normal draws (Box-Muller on two 24-bit uniforms, in float64):
    sqrt(-2 log u1) * cos(2 pi u2), u1 = (top 24 bits of the even value + 1) / 2**24, u2 = (those of the odd) / 2**24."""
    n = math.prod(shape)
    bits = _bits(seed, counters, 2 * n).view(seed.shape[0], n, 2)
    # In place, but every transcendental on a tensor of the draw's own shape and layout, so each element
    # takes the same (vectorised or tail) kernel path, and the same bits, as the out-of-place formula.
    u1 = ((bits[..., 0] >> 8) & 0xFFFFFF).add_(1).double().div_(2.0**24)  # (0, 1]: log is finite
    u2 = ((bits[..., 1] >> 8) & 0xFFFFFF).double().div_(2.0**24)
    z = u1.log_().mul_(-2.0).sqrt_().mul_(u2.mul_(2.0 * math.pi).cos_())
    return z.to(dtype).view(seed.shape[0], *shape)


def permutation(seed: torch.Tensor, counters: tuple[int | torch.Tensor, ...], n: int) -> torch.Tensor:
    """[P, n] permutations of range(n): a stable sort of hashed keys, so ties break by index."""
    keys = uint32(seed, counters, n)
    return torch.sort(keys, dim=1, stable=True).indices
