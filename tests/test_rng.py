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
