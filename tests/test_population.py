"""The population engine against the reference trainer (the oracle), in float64 on the CPU, for every
toggle, with both implementations of the masked Adam (the GPU's `where` branch runs here too)."""

import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import (
    KEYS,
    SMALL,
    Killed,
    assert_matches_reference,
    die_at,
    g_params,
    import_graph,
    mixed_configs,
    ref_g_params,
    run_with_compaction,
)

from gan_core import config as C
from gan_core.config import RunConfig
from gan_core.population import (
    STRUCTURE_KEYS,
    PopulationTrainer,
    split_into_populations,
)
from gan_core.stacked import OptimState, masked_adam, masked_sgd
from gan_core.trainer import Trainer


def sgd_configs():
    base = RunConfig().replace(**(SMALL | dict(steps_per_epoch=15)), optimiser="sgd", lr_d=0.05, lr_g=0.05)
    return [base.replace(seed=0), base.replace(seed=1, momentum=0.9),
            base.replace(seed=2, momentum=0.5, freeze="eval_only", zero_grad="own_after_step"),
            base.replace(seed=3, schedule="fixed", d_steps=2, momentum=0.9)]


@pytest.fixture(scope="module", params=["per_member", pytest.param("where", marks=pytest.mark.slow)])
def population_run(request, mnist):
    """The mixed population trained once per Adam implementation (the GPU's `where` in the full tier)."""
    pop = PopulationTrainer(mixed_configs(), mnist, adam_impl=request.param)
    return pop, pop.run()


@pytest.mark.slow
def test_each_member_reproduces_its_single_run_to_1e_10_for_every_toggle(population_run, mnist):
    pop, results = population_run
    assert_matches_reference(pop, results, mixed_configs(), mnist)


def test_the_toggles_act_in_the_population_as_in_the_reference(population_run):
    _, results = population_run
    last = [res.history[-1] for res in results]
    assert last[0].frozen_grad_g == 0 and last[0].leak_g == 0           # requires_grad_(False), cleared
    assert last[6].frozen_grad_g > 0 and last[6].leak_g == 0            # eval(): wasted, cleared anyway
    assert last[7].leak_g == 0 and last[7].leak_d == 0                  # own clearing, frozen: nothing leaks
    assert last[8].leak_g > 0 and last[8].leak_d > 0                    # eval() + own clearing: the leak
    assert last[9].leak_g > 1.5 * last[10].leak_g                       # 3 batches of stale gradient, not 1


def test_members_really_skip_g_steps(population_run):
    _, results = population_run
    steps = [sum(r.g_steps for r in res.history) for res in results]
    batches = SMALL["epochs"] * SMALL["steps_per_epoch"]
    assert steps[2] == batches // 2 and steps[5] == batches // 3  # fixed k = 2 and k = 3
    assert steps[0] != batches  # the adaptive rule rests G on some batches and loops on others


@pytest.mark.slow
def test_an_sgd_population_reproduces_its_single_runs(mnist):
    pop = PopulationTrainer(sgd_configs(), mnist)
    assert_matches_reference(pop, pop.run(), sgd_configs(), mnist)


@pytest.mark.slow
def test_the_inner_loop_s_stragglers_run_alone_and_still_match(mnist):
    """Adaptive members whose inner G loop runs long are compacted; the results do not change."""
    base = RunConfig().replace(**(SMALL | dict(epochs=1, steps_per_epoch=40)))
    configs = [base.replace(seed=s, g_loop_cap=20 if s < 2 else 1, lr_d=3e-3) for s in range(6)]
    pop = PopulationTrainer(configs, mnist)
    results = run_with_compaction(pop)
    assert_matches_reference(pop, results, configs, mnist)


def test_members_that_end_early_are_dropped_and_the_rest_still_match(mnist):
    """A member whose run ended is dropped from the population (a masked one costs what a live one does):
    the others carry on from their state and still reproduce their single runs; the dropped one's final
    grid is its own."""
    base = RunConfig().replace(**(SMALL | dict(steps_per_epoch=20)))
    configs = [base.replace(seed=0, epochs=1), base.replace(seed=1, epochs=3, lr_d=1e-3),
               base.replace(seed=2, epochs=2, schedule="fixed", d_steps=2), base.replace(seed=3, epochs=3)]
    pop = PopulationTrainer(configs, mnist)
    sizes = []
    subset = PopulationTrainer.subset

    def spy(self, keep):
        sizes.append(len(keep))
        return subset(self, keep)

    PopulationTrainer.subset = spy
    try:
        results = pop.run()
    finally:
        PopulationTrainer.subset = subset
    assert sizes == [3, 2]  # after epoch 1 (member 0 ended), after epoch 2 (member 2)
    for p, cfg in enumerate(configs):
        trainer = Trainer(cfg, mnist)
        ref = trainer.run()
        assert len(results[p].history) == len(ref.history) == cfg.budget.epochs
        for mine, theirs in zip(g_params(pop, p), ref_g_params(trainer)):  # `pop` ends holding every member
            assert (mine - theirs).abs().max().item() < 1e-10, p
        for a, b in zip(results[p].history, ref.history):
            for key in KEYS:
                assert getattr(a, key) == pytest.approx(getattr(b, key), rel=1e-10, abs=1e-10), (p, key)
        assert (results[p].samples - ref.samples).abs().max().item() < 1e-10, p
        assert results[p].quality is None and ref.quality is None  # no evaluator here: grids only


@pytest.mark.slow
def test_a_nan_member_leaves_every_other_member_bit_for_bit_unchanged(mnist):
    configs = mixed_configs()[:4] + mixed_configs()[8:9]
    clean = PopulationTrainer(configs, mnist)
    poisoned = PopulationTrainer(configs, mnist)
    with torch.no_grad():
        poisoned.D.weights[0][1].fill_(float("nan"))
    clean.run()
    res = poisoned.run()
    assert res[1].verdict.label == "diverged"
    for p in (0, 2, 3, 4):
        for a, b in zip(clean.G.params + clean.D.params, poisoned.G.params + poisoned.D.params):
            assert torch.equal(a[p], b[p]), p


@pytest.mark.slow
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


@pytest.mark.parametrize("impl", ["per_member", "where"])
def test_masked_adam_matches_torch_adam_step_by_step_and_skipped_members_stay_put(impl):
    torch.manual_seed(0)
    shapes = [(4, 5), (5,)]
    params = [torch.randn(3, *s, dtype=torch.float64) for s in shapes]
    refs = [[torch.nn.Parameter(p[i].clone()) for p in params] for i in range(3)]
    lrs, b1s, b2s = [1e-3, 3e-3, 1e-2], [0.9, 0.5, 0.0], [0.999, 0.99, 0.9]
    opts = [torch.optim.Adam(refs[i], lr=lrs[i], betas=(b1s[i], b2s[i]), eps=1e-8) for i in range(3)]
    state = OptimState.zeros(params)
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    masks = [[True, True, True], [True, False, True], [False, True, True], [True, True, False]]
    for mask in masks:
        grads = [torch.randn_like(p) for p in params]
        before = [p.clone() for p in params] + [m.clone() for m in state.m + state.v]
        masked_adam(params, grads, state, torch.tensor(mask), t(lrs), t(b1s), t(b2s), t([1e-8] * 3), impl)
        for i in range(3):
            if mask[i]:
                for r, g in zip(refs[i], grads):
                    r.grad = g[i].clone()
                opts[i].step()
            else:
                for b, a in zip(before, params + state.m + state.v):
                    assert torch.equal(a[i], b[i])
            for r, p in zip(refs[i], params):
                assert (r.detach() - p[i]).abs().max() < 1e-12
    assert state.step.tolist() == [3.0, 3.0, 3.0]


@pytest.mark.parametrize("impl", ["per_member", "where"])
def test_masked_adam_reads_a_gradient_laid_out_unlike_its_parameter(impl):
    """R1's double backward gives D's first-layer gradient transposed strides; torch's fused CPU Adam
    walks a gradient in its parameter's layout, so it must be handed a contiguous one."""
    torch.manual_seed(0)
    params = [torch.randn(2, 5, 3, dtype=torch.float64)]
    grad = torch.randn(2, 5, 3, dtype=torch.float64)
    strided = grad.transpose(1, 2).contiguous().transpose(1, 2)  # same values, other strides
    assert not strided.is_contiguous()
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    results = []
    for g in (grad, strided):
        p = [params[0].clone()]
        masked_adam(p, [g], OptimState.zeros(p), torch.tensor([True, True]), t([1e-3] * 2), t([0.9] * 2),
                    t([0.999] * 2), t([1e-8] * 2), impl)
        results.append(p[0])
    assert torch.equal(results[0], results[1])


def test_masked_sgd_matches_torch_sgd_step_by_step():
    torch.manual_seed(0)
    params = [torch.randn(3, 4, 5, dtype=torch.float64)]
    refs = [[torch.nn.Parameter(params[0][i].clone())] for i in range(3)]
    moms = [0.0, 0.9, 0.5]
    opts = [torch.optim.SGD(refs[i], lr=0.1, momentum=moms[i]) for i in range(3)]
    state = OptimState.zeros(params)
    for mask in ([True, True, True], [False, True, True], [True, False, True]):
        grads = [torch.randn_like(params[0])]
        masked_sgd(params, grads, state, torch.tensor(mask), torch.full((3,), 0.1, dtype=torch.float64),
                   torch.tensor(moms, dtype=torch.float64))
        for i in range(3):
            if mask[i]:
                refs[i][0].grad = grads[0][i].clone()
                opts[i].step()
            assert (refs[i][0].detach() - params[0][i]).abs().max() < 1e-12


def test_every_run_config_field_declares_how_a_population_treats_it():
    unclassified = sorted(k for k, v in C.POPULATION_CLASS.items() if v not in (C.POPULATION_SHARED, C.POPULATION_MEMBER))
    assert not unclassified and set(C.POPULATION_CLASS) == set(C.FLAT_KEYS)
    assert set(STRUCTURE_KEYS) == {k for k, v in C.POPULATION_CLASS.items() if v == C.POPULATION_SHARED}
    for f in (f for cls in (C.ModelConfig, C.OptimConfig, C.PitfallConfig, C.ScheduleConfig, C.CureConfig, C.DataConfig,
                            C.BudgetConfig) for f in dataclasses.fields(cls)):
        assert f.metadata.get("population") in (C.POPULATION_SHARED, C.POPULATION_MEMBER), f.name


def test_structure_splits_populations_and_every_toggle_joins_one():
    base = RunConfig().replace(**SMALL)
    configs = [base.replace(seed=0), base.replace(seed=1, lr_d=1e-3), base.replace(seed=2, d_hidden=64),
               base.replace(seed=3, freeze="eval_only", zero_grad="own_after_step"), base.replace(seed=4),
               base.replace(seed=5, optimiser="sgd")]
    assert split_into_populations(configs, max_size=2) == [[0, 1], [3, 4], [2], [5]]
    with pytest.raises(ValueError, match="share their structure"):
        PopulationTrainer(configs[1:3], None)


def test_gan_core_has_no_import_circle_not_even_through_a_function_local_import():
    graph = import_graph(Path(__file__).resolve().parent.parent / "gan_core", relative=True)

    def visit(node, stack):
        assert node not in stack, " -> ".join(stack + [node])
        for dep in graph[node]:
            visit(dep, stack + [node])

    for module in graph:
        visit(module, [])


def test_gan_core_imports_no_orchestration_library():
    import subprocess
    import sys

    code = ("import sys, gan_core.loop, gan_core.population, gan_core.trainer, gan_core.judge.constructed, "
            "gan_core.judge.weights, gan_core.judge.ship, gan_core.judge.labels, gan_core.judge.thresholds; "
            "bad = [m for m in ('optuna', 'mlflow', 'typer', 'pandas') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _trace(result):
    return [(r.epoch, r.loss_d, r.loss_g, r.d_real, r.d_fake, r.g_steps, r.leak_g) for r in result.history]


@pytest.mark.slow
def test_a_population_checkpoint_resumes_every_member_exactly_on_either_engine(mnist, tmp_path):
    base = RunConfig().replace(**(SMALL | dict(epochs=4, steps_per_epoch=10)))
    configs = [base.replace(seed=0), base.replace(seed=1, freeze="eval_only", zero_grad="own_after_step",
                                                  schedule="fixed", d_steps=3), base.replace(seed=2, lr_d=1e-3)]
    whole = PopulationTrainer(configs, mnist).run()
    paths = [tmp_path / f"m{p}.pt" for p in range(3)]
    interrupted = PopulationTrainer(configs, mnist, callbacks=[die_at(3)])
    with pytest.raises(Killed):
        interrupted.run(paths, checkpoint_every=2)
    assert all(p.is_file() for p in paths)
    resumed = PopulationTrainer(configs, mnist).run([p for p in paths], checkpoint_every=2)
    for a, b in zip(resumed, whole):
        assert a.resumed_from == 2 and _trace(a) == _trace(b)
    # the same checkpoints, resumed one by one on the reference engine
    for p, cfg in enumerate(configs):
        ref = Trainer(cfg, mnist).run(checkpoint=paths[p])
        assert ref.resumed_from == 2
        for x, y in zip(_trace(ref), _trace(whole[p])):
            assert x[:1] == y[:1] and x[5] == y[5]
            assert x[1:5] == pytest.approx(y[1:5], rel=1e-10, abs=1e-12)


@pytest.mark.slow
def test_a_reference_checkpoint_resumes_in_a_population_and_members_at_different_epochs_catch_up(mnist, tmp_path):
    base = RunConfig().replace(**(SMALL | dict(epochs=5, steps_per_epoch=10)))
    configs = [base.replace(seed=0, schedule="fixed", d_steps=2), base.replace(seed=1),
               base.replace(seed=2, zero_grad="own_after_step", freeze="eval_only")]
    whole = [Trainer(c, mnist).run() for c in configs]
    paths = [tmp_path / f"m{p}.pt" for p in range(3)]
    for p, stop in ((0, 5), (1, 3)):  # member 0 checkpointed at epoch 4, member 1 at epoch 2, member 2 never
        with pytest.raises(Killed):
            Trainer(configs[p], mnist, callbacks=[lambda ev, stop=stop: (_ for _ in ()).throw(Killed)
                                                  if ev.record.epoch == stop else None]).run(paths[p], 2)
    calls = []
    pop = PopulationTrainer(configs, mnist)
    real = pop.train_epoch
    pop.train_epoch = lambda e, s, active: (calls.append((e, list(active))), real(e, s, active))[1]
    results = pop.run(paths, checkpoint_every=2)
    assert [r.resumed_from for r in results] == [4, 2, 0]
    assert calls[:2] == [(0, [False, False, True]), (1, [False, False, True])]  # the laggard first
    assert calls[2:4] == [(2, [False, True, True]), (3, [False, True, True])]
    assert calls[4] == (4, [True, True, True])
    for r, w in zip(results, whole):
        for x, y in zip(_trace(r), _trace(w)):
            assert x[0] == y[0] and x[5] == y[5] and x[1:5] == pytest.approx(y[1:5], rel=1e-10, abs=1e-12)


def test_bf16_autocast_tracks_fp32_on_both_engines(mnist):
    """bfloat16 matmuls follow the float32 run closely (a weight cache kept across optimiser steps would
    train on stale weights and drift away at once), and the population matches the reference in bf16."""
    base = RunConfig().replace(dataset="mnist-10k", device="cpu", g_output="tanh", d_hidden=256, schedule="fixed",
                               g_loss="non_saturating", beta1=0.5, lr_d=1e-3, lr_g=1e-3, epochs=1, steps_per_epoch=40,
                               stop_early=False, eval_samples=100)
    fp32 = Trainer(base, mnist).run()
    bf16 = Trainer(base.replace(precision="bf16"), mnist).run()
    pop = PopulationTrainer([base.replace(precision="bf16"), base.replace(precision="bf16", seed=1)], mnist).run()
    a, b, c = fp32.history[0], bf16.history[0], pop[0].history[0]
    assert a.d_real > 0.8  # in 40 steps D has learned to accept real digits (a stale bf16 D stays near 0.5)
    for key in ("d_real", "d_fake"):
        assert abs(getattr(b, key) - getattr(a, key)) < 0.05, key
        assert abs(getattr(c, key) - getattr(b, key)) < 0.05, key
