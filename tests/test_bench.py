"""`gan-sweep bench`: its floor counts what the engines compute, its rows are timed interleaved, and a
study's own population runs through the epoch loop beside its floor."""

import json

import pytest
import torch
from conftest import main_cli
from torch.utils.flop_counter import FlopCounterMode

from gan_core.config import RunConfig
from gan_core.cost import member_step
from gan_core.probes import Probes
from gan_core.trainer import Trainer
from sweeps.running.bench import Timed, time_interleaved


@pytest.mark.parametrize("kw", [dict(), dict(d_hidden=1024, g_output="tanh", g_loss="non_saturating"),
                                dict(z_dim=16, g_hidden="32,64", d_hidden=32, batch_size=16)])
def test_the_floor_counts_exactly_the_matrix_products_a_reference_step_runs(mnist, kw):
    """torch's own FLOP counter over one real batch of the seed's loop (D frozen with requires_grad_(False))."""
    cfg = RunConfig().replace(dataset="mnist-10k", device="cpu", schedule="fixed", d_steps=1, **kw)
    trainer = Trainer(cfg, mnist)
    with FlopCounterMode(display=False) as counted:
        phase = trainer.step.batch(trainer.data[:cfg.data.batch_size], lambda draw: trainer.noise(0, draw), Probes(),
                                   lambda slot: trainer.instance_noise(0, slot))
    assert phase.steps == 1
    assert counted.get_total_flops() == member_step(cfg, mnist.image_dim).flops


@pytest.mark.parametrize("kw", [dict(), dict(optimiser="sgd", momentum=0.9), dict(optimiser="sgd", dtype="float64"),
                                dict(schedule="fixed", d_steps=2)])
def test_the_optimiser_s_bytes_count_the_parameters_each_update_of_a_reference_step_touches(mnist, kw):
    """Every optimiser step of a few real batches, counted by torch's global hook: the parameters each
    one updated, times the numbers per parameter of its kind, times the dtype's width."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    cfg = RunConfig().replace(dataset="mnist-10k", device="cpu", **{"schedule": "fixed", "d_steps": 1, **kw})
    trainer = Trainer(cfg, mnist)
    updated = []
    hook = register_optimizer_step_post_hook(
        lambda opt, args, kwargs: updated.append(sum(p.numel() for g in opt.param_groups for p in g["params"]
                                                     if p.grad is not None)))
    batches = 2 * cfg.schedule.d_steps
    try:
        for b in range(batches):
            trainer.step.batch(trainer.data[64 * b:64 * (b + 1)], lambda draw: trainer.noise(0, draw), Probes(),
                               lambda slot: trainer.instance_noise(0, slot))
    finally:
        hook.remove()
    per_number = {"adam": 7, "sgd": 5 if cfg.optim.momentum else 3}[cfg.optim.optimiser]
    width = torch.tensor([], dtype=getattr(torch, cfg.dtype)).element_size()
    cost = member_step(cfg, mnist.image_dim)
    assert sum(updated) * per_number * width == pytest.approx(batches * cost.optimiser_bytes)
    d_params = sum(p.numel() for p in trainer.D.parameters())
    assert cost.optimiser_bytes_per_update[0] == d_params * per_number * width


def test_freezing_with_eval_only_computes_more_than_the_floor(mnist):
    """The pitfall's cost: D's weight gradients during G's step are computed and thrown away."""
    cfg = RunConfig().replace(dataset="mnist-10k", device="cpu", schedule="fixed", d_steps=1, freeze="eval_only")
    trainer = Trainer(cfg, mnist)
    with FlopCounterMode(display=False) as counted:
        trainer.step.batch(trainer.data[:64], lambda draw: trainer.noise(0, draw), Probes(),
                           lambda slot: trainer.instance_noise(0, slot))
    assert counted.get_total_flops() > member_step(cfg, mnist.image_dim).flops


def test_rows_are_timed_interleaved_so_a_drifting_machine_slows_them_alike():
    calls = []

    def row(name):
        return Timed(name, 1, "fp32", "fixed", 4, lambda n: calls.append((name, n)) or 1.0, 1e6)

    rows = time_interleaved([row("a"), row("b"), row("c")], repeats=3, device=torch.device("cpu"), log=lambda s: None)
    timed = [name for name, n in calls if n == 4]
    assert [name for name, n in calls if n != 4] == ["a", "b", "c"]  # warm-ups first
    assert timed == ["a", "b", "c"] * 3  # each round times every row once, in turn
    for r in rows:
        assert r["ms_min"] <= r["ms_per_step"] <= r["ms_max"] and r["spread"] >= 0
        assert r["updates_per_member_step"] == 3.0


@pytest.mark.slow  # a whole bench with its study row (about 9 s): the quick tier stays under 2 minutes
def test_the_bench_times_a_study_s_own_population_beside_its_floor(tmp_path, capsys, monkeypatch):
    study = tmp_path / "tiny.toml"
    study.write_text("""
name = "tiny"
seeds = [0]
[sampler]
kind = "grid"
[space]
lr_d = { values = [1e-4, 1e-3, 1e-2] }
[fixed]
dataset = "mnist"
z_dim = 16
g_hidden = "32,64"
d_hidden = 32
schedule = "fixed"
[profiles.quick]
epochs = 6
eval_every = 2
eval_samples = 64
""")
    monkeypatch.chdir(tmp_path)
    code, out, err = main_cli(["bench", "--device", "cpu", "--sizes", "2", "--steps", "4", "--repeats", "2",
                               "--study", study, "--profile", "quick", "--out", "b.json"], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "b.json").read_text())
    loop_row = result["rows"][-1]
    assert loop_row["engine"] == "(f) tiny-quick epoch loop" and loop_row["members"] == 3
    assert 0 < loop_row["floor_share"] <= 1.0  # the floor is a bound: nothing runs faster than its arithmetic
    st = result["study"]
    cfg = RunConfig().replace(z_dim=16, g_hidden="32,64", d_hidden=32, schedule="fixed")
    assert st["gflop_per_member_step"] * 1e9 == member_step(cfg, 784).flops
    assert st["member_steps"] == 3 * 6 * (8_000 // 64) and st["evaluations"] == 3 * 3
    assert st["projected_seconds"] == pytest.approx(st["loop_seconds"] + st["evaluation_seconds"])
    assert st["times_floor"] == pytest.approx(st["projected_seconds"] / st["floor_seconds"])
    assert result["memory_gbs"] > 0 and st["optimiser_floor_seconds"] == pytest.approx(
        st["member_steps"] * member_step(cfg, 784).optimiser_bytes / result["memory_gbs"] / 1e9)
    assert st["times_floor_with_optimiser"] < st["times_floor"]
    assert "its optimiser streams" in out
    assert "tiny-quick: 3 trials x 6 epochs x 125 steps" in out and "x the floor" in out
    assert {r["engine"] for r in result["rows"]} >= {"(a) seed loop", "(b) reference", "(c) population",
                                                      "(d) population", "(e) reference + g_ema"}
