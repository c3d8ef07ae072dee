"""The field's cures: each toggle's probe shows it acted (and that it is silent when off), spectral norm
is torch's algorithm, and the population engine reproduces every cure member by member in float64."""

import copy

import pytest
import torch
from conftest import (
    KEYS,
    SMALL,
    Killed,
    cure_configs,
    die_at,
    g_params,
    ref_g_params,
    run_with_compaction,
)

from gan_core import cures, rng
from gan_core.config import ConfigError, RunConfig
from gan_core.models import Discriminator
from gan_core.population import PopulationTrainer
from gan_core.probes import Probes
from gan_core.toggles import CURE_PROBES
from gan_core.trainer import Trainer

CURE_KEYS = CURE_PROBES
# The seed's networks at the size they train at, on a learning rate at which D's weights grow.
SEEDLIKE = dict(dataset="mnist-10k", device="cpu", epochs=3, steps_per_epoch=50, eval_samples=200, stop_early=False,
                lr_d=2e-3, lr_g=2e-3, schedule="fixed")


@pytest.fixture(scope="module")
def references(mnist):
    out = []
    for cfg in cure_configs():
        trainer = Trainer(cfg, mnist)
        out.append((trainer, trainer.run()))
    return out


def assert_cures_match(pop, results, references, rows=None):
    for p, (trainer, ref) in enumerate(references):
        if rows is not None and p not in rows:
            continue
        assert len(ref.history) == len(results[p].history)
        for a, b in zip(results[p].history, ref.history):
            assert (a.g_steps, a.g_batches, a.g_capped) == (b.g_steps, b.g_batches, b.g_capped), p
            for key in KEYS + CURE_KEYS:
                assert getattr(a, key) == pytest.approx(getattr(b, key), rel=1e-10, abs=1e-10), (p, key)
        for mine, theirs in zip(g_params(pop, p), ref_g_params(trainer)):
            assert (mine - theirs).abs().max().item() < 1e-10, p
        # the scored samples (the average's, where there is one) are the same too
        assert (pop.generate(p, 50) - trainer.generate(0, 50)).abs().max().item() < 1e-10, p
        assert results[p].verdict.label == ref.verdict.label


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["per_member", "where"])
def test_every_cure_in_a_population_reproduces_its_single_run_to_1e_10(mnist, references, impl):
    pop = PopulationTrainer(cure_configs(), mnist, adam_impl=impl)
    assert_cures_match(pop, pop.run(), references)


@pytest.mark.slow
def test_the_inner_loop_s_compacted_stragglers_keep_their_cures(mnist):
    """The adaptive loop's gathered subset applies spectral norm, instance noise and the EMA per row."""
    base = RunConfig().replace(**(SMALL | dict(epochs=1, steps_per_epoch=20)))
    configs = [base.replace(seed=s, g_loop_cap=20 if s < 2 else 1, lr_d=3e-3, spectral_norm=s % 2 == 0,
                            instance_noise=0.3 * (s % 3), g_ema=0.9 if s != 3 else 0.0) for s in range(6)]
    pop = PopulationTrainer(configs, mnist)
    results = run_with_compaction(pop)
    refs = []
    for cfg in configs:
        trainer = Trainer(cfg, mnist)
        refs.append((trainer, trainer.run()))
    assert_cures_match(pop, results, refs)


@pytest.mark.slow
def test_a_checkpoint_with_cures_resumes_exactly_on_either_engine(mnist, tmp_path):
    base = RunConfig().replace(**(SMALL | dict(epochs=4, steps_per_epoch=8)))
    configs = [base.replace(seed=0, spectral_norm=True, g_ema=0.9), base.replace(seed=1, instance_noise=0.4, r1_gamma=1.0),
               base.replace(seed=2, label_smoothing=0.1, g_ema=0.5, spectral_norm=True)]
    whole = PopulationTrainer(configs, mnist).run()
    paths = [tmp_path / f"m{p}.pt" for p in range(3)]
    with pytest.raises(Killed):
        PopulationTrainer(configs, mnist, callbacks=[die_at(3)]).run(paths, checkpoint_every=2)
    resumed_pop = PopulationTrainer(configs, mnist)
    resumed = resumed_pop.run(list(paths), checkpoint_every=2)
    for p, (a, b) in enumerate(zip(resumed, whole)):
        assert a.resumed_from == 2
        for x, y in zip(a.history, b.history):
            for key in KEYS + CURE_KEYS:
                assert getattr(x, key) == pytest.approx(getattr(y, key), rel=1e-10, abs=1e-12), (p, key)
    for p, cfg in enumerate(configs):  # the population's checkpoints on the reference engine
        ref = Trainer(cfg, mnist)
        result = ref.run(checkpoint=paths[p])
        assert result.resumed_from == 2
        for x, y in zip(result.history, whole[p].history):
            for key in CURE_KEYS + ("loss_d", "d_real"):
                assert getattr(x, key) == pytest.approx(getattr(y, key), rel=1e-10, abs=1e-12), (p, key)
        assert (ref.generate(0, 20) - resumed_pop.generate(p, 20)).abs().max().item() < 1e-10


# -- spectral norm ------------------------------------------------------------------------------------

@pytest.mark.slow  # two seed-like runs; the quick tier checks our spectral norm against torch's step by step
def test_spectral_norm_holds_d_s_largest_singular_value_at_one_and_without_it_d_grows(mnist):
    off = Trainer(RunConfig().replace(**SEEDLIKE), mnist).run().history
    on = Trainer(RunConfig().replace(**SEEDLIKE, spectral_norm=True), mnist).run().history
    for rec in on:
        assert rec.d_sv_1 == pytest.approx(1, rel=0.1) and rec.d_sv_2 == pytest.approx(1, rel=0.1)
    assert off[-1].d_sv_1 > 3  # 10-11 here: the unnormalised D's first layer has grown tenfold
    assert off[-1].d_real > 0.99 > on[-1].d_real  # the normalised D is kept from winning outright


def test_our_spectral_norm_is_torch_s_step_by_step():
    """models.Discriminator's spectral norm against torch.nn.utils.parametrizations.spectral_norm, given the
    same starting vectors, over training forwards (which iterate) and evaluation forwards (which do not)."""
    from gan_core.config import ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(d_hidden=12)
    ours = Discriminator(cfg, 20, spectral_norm=True).double()
    ours.init_spectral_norm(torch.Generator().manual_seed(1))
    ours.double()
    theirs = copy.deepcopy(ours)
    theirs.spectral_norm = False
    for i, layer in enumerate(theirs.linears):
        torch.nn.utils.parametrizations.spectral_norm(layer)
        sn = layer.parametrizations.weight[0]
        sn._u.copy_(getattr(ours, f"sn_u{i}"))
        sn._v.copy_(getattr(ours, f"sn_v{i}"))
    opt_a = torch.optim.SGD(ours.parameters(), lr=0.5)
    opt_b = torch.optim.SGD(theirs.parameters(), lr=0.5)
    for step in range(6):
        x = torch.randn(8, 20, dtype=torch.float64)
        for net in (ours, theirs):
            net.train(step % 3 != 2)
        a, b = ours(x), theirs(x)
        assert (a - b).abs().max().item() < 1e-12, step
        for opt, out in ((opt_a, a), (opt_b, b)):
            opt.zero_grad()
            out.pow(2).mean().backward()
            opt.step()


# -- R1 -----------------------------------------------------------------------------------------------

@pytest.mark.slow  # two seed-like runs; R1's arithmetic is in the float64 engine comparisons too
def test_r1_penalises_d_s_gradient_on_real_data_and_its_probe_is_the_penalty(mnist):
    base = RunConfig().replace(**SEEDLIKE)
    runs = {}
    for gamma in (0.0, 10.0):
        trainer = Trainer(base.replace(r1_gamma=gamma), mnist)
        history = trainer.run().history
        x = trainer.data[:500].clone().requires_grad_(True)
        grad, = torch.autograd.grad(trainer.D(x).sum(), x)
        runs[gamma] = (history, grad.pow(2).sum(1).mean().item())
    assert all(r.r1_penalty == 0 for r in runs[0.0][0])
    assert all(r.r1_penalty > 0 for r in runs[10.0][0])
    # the last epoch's penalty is gamma / 2 times D's squared input gradient, which R1 has made small
    assert runs[10.0][0][-1].r1_penalty == pytest.approx(5 * runs[10.0][1], rel=0.5)
    assert runs[10.0][1] < runs[0.0][1] / 5


# -- label smoothing ----------------------------------------------------------------------------------

def test_label_smoothing_makes_a_winning_d_aim_at_its_real_target(mnist):
    base = RunConfig().replace(**SEEDLIKE, d_steps=50)  # G barely trains: D wins
    plain = Trainer(base, mnist).run().history
    smoothed = Trainer(base.replace(label_smoothing=0.2), mnist).run().history
    assert plain[-1].d_real > 0.97 and plain[-1].real_target == 1.0
    assert smoothed[-1].d_real == pytest.approx(0.8, abs=0.04) and smoothed[-1].real_target == pytest.approx(0.8)


# -- instance noise -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_instance_noise_is_annealed_to_zero_and_blurs_d_s_view(mnist):
    base = RunConfig().replace(**SEEDLIKE)
    plain = Trainer(base, mnist).run().history
    trainer = Trainer(base.replace(instance_noise=1.0), mnist)
    noisy = trainer.run().history
    assert [r.noise_std for r in noisy] == pytest.approx([1.0, 2 / 3, 1 / 3])
    assert all(r.noise_std == 0 for r in plain)
    # D sees real and fake through the noise: at its strongest it tells them apart less well (0.75 against 0.32 here)
    assert noisy[0].loss_d > 1.5 * plain[0].loss_d
    # and the noise added is the std asked for, a fresh draw per input slot
    step = trainer.step
    step.noise_std = 0.5
    x = torch.zeros(64, 784)
    a = step._d_input(x, lambda slot: trainer.instance_noise(7, slot), 0)
    b = step._d_input(x, lambda slot: trainer.instance_noise(7, slot), 1)
    assert a.std().item() == pytest.approx(0.5, rel=0.02) and not torch.equal(a, b)
    assert cures.instance_noise_std(0.0, 0, 10) == 0


# -- G's EMA ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_g_ema_averages_g_with_warm_up_and_the_average_is_what_is_scored(mnist):
    base = RunConfig().replace(**SEEDLIKE)
    assert all(r.ema_distance == 0 for r in Trainer(base, mnist).run().history)
    trainer = Trainer(base.replace(g_ema=0.999), mnist)
    start = [p.detach().clone() for p in trainer.G.parameters()]
    trainer.step.g_step(trainer.noise(0, 1), Probes())
    after = [p.detach().clone() for p in trainer.G.parameters()]
    beta = min(0.999, 2 / 11)  # the first update's warmed-up decay
    for e, s, a in zip(trainer.step.G_ema.parameters(), start, after):
        assert (e - (beta * s + (1 - beta) * a)).abs().max().item() < 1e-6
    history = Trainer(base.replace(g_ema=0.999), mnist).run().history
    assert all(r.ema_distance > 0 for r in history)
    trainer = Trainer(base.replace(g_ema=0.9, epochs=1), mnist)  # generate() scores the average, not G
    trainer.run()
    z = rng.normal(trainer.seed, (rng.STREAM_EVAL, 0, 0), (16, 100), torch.float32)[0]
    with torch.no_grad():
        assert torch.allclose(trainer.generate(0, 16), trainer.step.G_ema(z))
        assert not torch.allclose(trainer.generate(0, 16), trainer.G(z), atol=1e-3)


# -- configuration ------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, message", [
    ("r1_gamma", -1, "r1_gamma must be >= 0"), ("r1_gamma", "nan", "r1_gamma must be >= 0"),
    ("label_smoothing", 0.5, "label_smoothing must be in [0, 0.5)"),
    ("instance_noise", 11, "instance_noise must be at most 10"), ("g_ema", 1.0, "g_ema must be in [0, 1)"),
    ("spectral_norm", "maybe", "spectral_norm must be true or false"),
])
def test_a_bad_cure_value_is_one_line_naming_it(key, value, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")) as err:
        RunConfig().replace(**{key: value})
    assert "\n" not in str(err.value)


def test_every_cure_defaults_to_off_so_the_seed_s_run_is_unchanged():
    flat = RunConfig().to_flat()
    assert (flat["spectral_norm"], flat["r1_gamma"], flat["label_smoothing"], flat["instance_noise"],
            flat["g_ema"]) == (False, 0.0, 0.0, 0.0, 0.0)


def test_the_top_singular_value_probe_is_the_svd_s_either_way_round_and_nan_where_not_finite():
    from gan_core.cures import top_singular_value

    gen = torch.Generator().manual_seed(0)
    w = torch.randn(3, 50, 70, generator=gen, dtype=torch.float64)
    w[1] *= 30
    svd = torch.linalg.matrix_norm(w, ord=2)
    assert torch.allclose(top_singular_value(w), svd, rtol=1e-12, atol=0)
    assert torch.allclose(top_singular_value(w.transpose(-1, -2)), svd, rtol=1e-12, atol=0)  # [out, in] layout
    w[2, 4, 5] = float("nan")
    got = top_singular_value(w)
    assert got[2].isnan() and torch.allclose(got[:2], svd[:2], rtol=1e-12, atol=0)
