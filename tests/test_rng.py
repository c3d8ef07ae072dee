import math

import pytest
import torch

from gan_core import rng


def test_noise_is_a_pure_function_of_its_counters():
    seed = torch.tensor([5])
    a = rng.normal(seed, (rng.STREAM_NOISE, 10, 0), (64, 100), torch.float64)
    b = rng.normal(seed, (rng.STREAM_NOISE, 10, 0), (64, 100), torch.float64)
    c = rng.normal(seed, (rng.STREAM_NOISE, 10, 1), (64, 100), torch.float64)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_noise_is_standard_normal_and_rows_are_independent():
    z = rng.normal(torch.tensor([0]), (rng.STREAM_NOISE, 0, 0), (4000, 50), torch.float64)[0]
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    corr = torch.corrcoef(z[:200])  # rows of one draw must not repeat each other
    off_diagonal = corr[~torch.eye(200, dtype=torch.bool)]
    assert off_diagonal.abs().max() < 0.6


def test_a_batch_of_seeds_equals_each_seed_alone():
    seeds = torch.tensor([0, 7, 123456])
    both = rng.normal(seeds, (rng.STREAM_NOISE, 3, 2), (8, 10), torch.float32)
    for i, s in enumerate(seeds):
        assert torch.equal(both[i], rng.normal(s.view(1), (rng.STREAM_NOISE, 3, 2), (8, 10), torch.float32)[0])


def test_permutation_is_a_permutation_and_depends_on_seed_and_epoch():
    p = rng.permutation(torch.tensor([1, 2]), (rng.STREAM_DATA, 0), 1000)
    assert torch.equal(p[0].sort().values, torch.arange(1000))
    assert not torch.equal(p[0], p[1])
    assert not torch.equal(p[0], rng.permutation(torch.tensor([1]), (rng.STREAM_DATA, 1), 1000)[0])


# The definition the fast draws are held to: the int64 finaliser, out of place, keyed on tensors.
def _mix64(x):
    x = ((x >> 16) ^ x) * 0x45D9F3B & 0xFFFFFFFF
    x = ((x >> 16) ^ x) * 0x45D9F3B & 0xFFFFFFFF
    return (x >> 16) ^ x


def _uint32_by_definition(seed, counters, n):
    h = _mix64(seed.to(torch.int64) & 0xFFFFFFFF ^ 0x9E3779B9)
    for c in counters:
        c = torch.as_tensor(c, dtype=torch.int64)
        h = _mix64(h ^ (c & 0xFFFFFFFF))
        h = _mix64(h ^ (c >> 32))
    index = _mix64(torch.arange(n, dtype=torch.int64))
    return _mix64(_mix64(h[:, None] ^ index[None, :]) + 0x6A09E667 & 0xFFFFFFFF)


def _normal_by_definition(seed, counters, shape, dtype):
    n = math.prod(shape)
    bits = _uint32_by_definition(seed, counters, 2 * n).view(seed.shape[0], n, 2)
    u1 = ((bits[..., 0] >> 8) + 1).double() / 2.0**24
    u2 = (bits[..., 1] >> 8).double() / 2.0**24
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return z.to(dtype).view(seed.shape[0], *shape)


SEEDS = [torch.tensor([0]), torch.tensor([5, 7, 123456, 2**31 - 1, 2**32 + 3, -1, 9, 10]), torch.arange(3) * 977]
COUNTERS = [(1, 0, 0), (5, 37, 2), (2, 2**32 + 5, 1), (4,), (3, torch.tensor(11), 0)]


@pytest.mark.parametrize("shape", [(64, 784), (64, 16), (7, 13), (1, 1), (5, 3, 3), (1000, 1)])
def test_the_in_place_int32_draws_equal_the_int64_definition_bit_for_bit(shape):
    for seed in SEEDS:
        for counters in COUNTERS:
            n = math.prod(shape)
            assert torch.equal(rng.uint32(seed, counters, n), _uint32_by_definition(seed, counters, n))
            for dtype in (torch.float64, torch.float32):
                assert torch.equal(rng.normal(seed, counters, shape, dtype),
                                   _normal_by_definition(seed, counters, shape, dtype)), (seed, counters, dtype)


def test_the_host_key_a_cpu_takes_equals_the_tensor_key_a_gpu_takes():
    for seed in SEEDS:
        for counters in COUNTERS + [(1, torch.arange(len(seed)) * 2**33 + 1, 4)]:
            host, tensor = rng._key_host(seed, *counters), rng._key_tensor(seed, *counters)
            assert host.dtype == tensor.dtype == torch.int64
            assert torch.equal(host, tensor), (seed, counters)
    assert rng._key(torch.tensor([1])).device.type == "cpu"
