"""The population engine against the reference trainer (the oracle), in float64 on the CPU."""

import pytest
import torch

from gan_core.config import RunConfig
from gan_core.population import (AdamState, PopulationTrainer, masked_adam, split_into_populations,
                                 unsupported_reason)
from gan_core.trainer import Trainer

SMALL = dict(dataset="mnist-10k", device="cpu", dtype="float64", z_dim=16, g_hidden="32,64", d_hidden=32,
             epochs=2, steps_per_epoch=60, eval_samples=100, stop_early=False)


def mixed_configs():
    base = RunConfig().replace(**SMALL)
    return [
        base.replace(seed=0),                                                    # the seed's adaptive rule
        base.replace(seed=1, lr_d=1e-3, lr_g=5e-4, clip_d="off"),
        base.replace(seed=2, clamp="logits", g_loss="non_saturating", schedule="fixed", d_steps=2),
        base.replace(seed=3, clamp="none", beta1=0.5, g_loop_cap=3, clip_g=0.1),
        base.replace(seed=4, lr_d=3e-3, lr_g=3e-3, g_loss="non_saturating", clamp_eps=1e-2),
        base.replace(seed=5, schedule="fixed", d_steps=3, beta2=0.99, lr_g=2e-3),
    ]


def g_params(pop, p):
    return [w.detach()[p] for w in pop.G.params]


def ref_g_params(trainer):
    out = []
    for layer in (m for m in trainer.G.net if isinstance(m, torch.nn.Linear)):
        out += [layer.weight.detach().T, layer.bias.detach()]
    return out


@pytest.fixture(scope="module")
def population_run(mnist):
    pop = PopulationTrainer(mixed_configs(), mnist)
    return pop, pop.run()


def test_each_member_reproduces_its_single_run_to_1e_10(population_run, mnist):
    pop, results = population_run
    for p, cfg in enumerate(mixed_configs()):
        trainer = Trainer(cfg, mnist)
        ref = trainer.run()
        assert len(ref.history) == len(results[p].history) == 2
        for a, b in zip(results[p].history, ref.history):
            assert a.g_steps == b.g_steps and a.g_batches == b.g_batches and a.g_capped == b.g_capped
            for key in ("loss_d", "loss_g", "d_real", "d_fake", "grad_d", "grad_d_max", "grad_g", "clamp_rate"):
                assert getattr(a, key) == pytest.approx(getattr(b, key), rel=1e-10, abs=1e-10), (p, key)
        for mine, theirs in zip(g_params(pop, p), ref_g_params(trainer)):
            assert (mine - theirs).abs().max().item() < 1e-10, p
        assert results[p].verdict.label == ref.verdict.label


def test_members_really_skip_g_steps(population_run):
    _, results = population_run
    steps = [sum(r.g_steps for r in res.history) for res in results]
    batches = 120
    assert steps[2] == batches // 2 and steps[5] == batches // 3  # fixed k = 2 and k = 3
    assert steps[0] != batches  # the adaptive rule rests G on some batches and loops on others


def test_a_nan_member_leaves_every_other_member_bit_for_bit_unchanged(mnist):
    configs = mixed_configs()[:4]
    clean = PopulationTrainer(configs, mnist)
    poisoned = PopulationTrainer(configs, mnist)
    with torch.no_grad():
        poisoned.D.weights[0][1].fill_(float("nan"))
    clean.run()
    res = poisoned.run()
    assert res[1].verdict.label == "diverged"
    for p in (0, 2, 3):
        for a, b in zip(clean.G.params + clean.D.params, poisoned.G.params + poisoned.D.params):
            assert torch.equal(a[p], b[p]), p


def test_permuting_members_permutes_results_exactly(mnist):
    configs = mixed_configs()[:4]
    order = [2, 0, 3, 1]
    a = PopulationTrainer(configs, mnist)
    b = PopulationTrainer([configs[i] for i in order], mnist)
    ra, rb = a.run(), b.run()
    for j, i in enumerate(order):
        assert [(r.loss_d, r.loss_g, r.g_steps) for r in ra[i].history] == \
               [(r.loss_d, r.loss_g, r.g_steps) for r in rb[j].history]
        for x, y in zip(a.G.params + a.D.params, b.G.params + b.D.params):
            assert torch.equal(x[i], y[j])


def test_masked_adam_leaves_skipped_members_exactly_as_they_were():
    torch.manual_seed(0)
    params = [torch.randn(3, 4, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)]
    state = AdamState.zeros(params)
    one = torch.ones(3, dtype=torch.float64)
    masked_adam(params, [torch.randn_like(p) for p in params], state, torch.ones(3, dtype=torch.bool),
                1e-3 * one, 0.9 * one, 0.999 * one, 1e-8 * one)
    before = [t.clone() for t in params + state.m + state.v] + [state.step.clone()]
    mask = torch.tensor([True, False, True])
    masked_adam(params, [torch.randn_like(p) for p in params], state, mask, 1e-3 * one, 0.9 * one, 0.999 * one,
                1e-8 * one)
    after = params + state.m + state.v
    for b, a in zip(before, after):
        assert torch.equal(a[1], b[1]) and not torch.equal(a[0], b[0])
    assert state.step.tolist() == [2.0, 1.0, 2.0]


def test_structure_splits_populations_and_unsupported_configs_are_named():
    base = RunConfig().replace(**SMALL)
    configs = [base.replace(seed=0), base.replace(seed=1, lr_d=1e-3), base.replace(seed=2, d_hidden=64),
               base.replace(seed=3), base.replace(seed=4)]
    assert split_into_populations(configs, max_size=2) == [[0, 1], [3, 4], [2]]
    assert unsupported_reason(base) is None
    assert "freeze=eval_only" in unsupported_reason(base.replace(freeze="eval_only"))
    assert "optimiser=sgd" in unsupported_reason(base.replace(optimiser="sgd"))
    with pytest.raises(ValueError, match="share their structure"):
        PopulationTrainer(configs[1:3], None)
