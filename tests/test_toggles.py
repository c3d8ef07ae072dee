"""Each pitfall toggle changes what it should, shown by its probe."""

import math

import pytest
import torch

from gan_core.config import RunConfig, ScheduleConfig
from gan_core.probes import Probes
from gan_core.schedule import AdaptiveRule, FixedRule
from gan_core.trainer import SeedStep, Trainer, grad_norm


def make_step(cfg: RunConfig, mnist) -> tuple[Trainer, SeedStep]:
    trainer = Trainer(cfg, mnist)
    return trainer, trainer.step


def force_d_output(D, logit: float) -> None:
    """Make D output sigmoid(logit) for every input (zero first layer, fixed bias)."""
    with torch.no_grad():
        for p in D.parameters():
            p.zero_()
        D.net[-1].bias.fill_(logit)


# -- clamp ---------------------------------------------------------------------------------

def test_without_clamp_a_saturated_d_gives_inf_and_the_run_is_labelled_diverged(tiny_config, mnist):
    cfg = tiny_config.replace(clamp="none", epochs=3)
    trainer = Trainer(cfg, mnist)
    force_d_output(trainer.D, 100.0)  # D(x) = 1 exactly in float32: log(1 - D(G(z))) = log 0
    result = trainer.run()  # must not raise
    assert result.history[0].nonfinite > 0
    assert result.verdict.label == "diverged" and result.verdict.sealed and result.verdict.epoch == 1
    assert len(result.history) == 1 and result.stopped_early  # stopped cleanly after the epoch


def test_the_epoch_event_says_which_epoch_is_a_run_s_last_early_stop_or_budget(tiny_config, mnist):
    """What the study's ETA reads to stop counting a stopped trial's unrun epochs as work left."""
    seen = []
    stopping = Trainer(tiny_config.replace(clamp="none", epochs=3), mnist, callbacks=[seen.append])
    force_d_output(stopping.D, 100.0)
    stopping.run()
    assert [(ev.record.epoch, ev.final) for ev in seen] == [(1, True)]  # sealed diverged at 1 of 3
    seen.clear()
    Trainer(tiny_config, mnist, callbacks=[seen.append]).run()
    assert [(ev.record.epoch, ev.final) for ev in seen] == [(1, False), (2, True)]


def test_with_clamp_the_same_d_gives_a_finite_loss_and_zero_gradient(tiny_config, mnist):
    trainer, step = make_step(tiny_config.replace(clamp="clamp", clip_d="off"), mnist)
    force_d_output(trainer.D, 100.0)
    probes = Probes()
    loss = step.d_fake(trainer.noise(0, 0), probes)
    assert loss.item() == pytest.approx(-math.log(1e-3), rel=1e-5)  # stuck at 6.91
    assert probes.values["grad_d"][0].item() == 0.0  # the clamp zeroed D's gradient: a dead D
    assert probes.values["clamp_hits"][0].item() == tiny_config.data.batch_size  # it fired on every output


def test_logits_mode_stays_finite_and_keeps_a_gradient(tiny_config, mnist):
    trainer, step = make_step(tiny_config.replace(clamp="logits", clip_d="off"), mnist)
    force_d_output(trainer.D, 100.0)
    probes = Probes()
    loss = step.d_fake(trainer.noise(0, 0), probes)
    assert loss.item() == pytest.approx(100.0, rel=1e-4)  # softplus(100)
    assert probes.values["grad_d"][0].item() > 0.5


# -- freeze and zero_grad ------------------------------------------------------------------

def test_requires_grad_freeze_leaves_g_without_grad(tiny_config, mnist):
    trainer, step = make_step(tiny_config.replace(freeze="requires_grad"), mnist)
    step.d_real(trainer.data[:64], Probes())
    step.d_fake(trainer.noise(0, 0), Probes())
    assert all(p.grad is None for p in trainer.G.parameters())


def test_eval_only_freeze_fills_g_grad(tiny_config, mnist):
    trainer, step = make_step(tiny_config.replace(freeze="eval_only"), mnist)
    probes = Probes()
    step.d_fake(trainer.noise(0, 0), probes)
    assert all(p.grad is not None for p in trainer.G.parameters())
    assert grad_norm(trainer.G).item() > 0
    assert probes.values["frozen_grad_g"][0].item() == pytest.approx(grad_norm(trainer.G).item())


@pytest.mark.parametrize("freeze, zero_grad, leaks", [
    ("eval_only", "own_after_step", True),
    ("eval_only", "both_before_backward", False),
    ("requires_grad", "own_after_step", False),
    ("requires_grad", "both_before_backward", False),
])
def test_only_eval_only_with_own_after_step_leaks_into_the_next_update(tiny_config, mnist, freeze, zero_grad, leaks):
    cfg = tiny_config.replace(freeze=freeze, zero_grad=zero_grad, schedule="fixed", d_steps=1)
    trainer, step = make_step(cfg, mnist)
    probes = Probes()
    for b in range(3):
        step.batch(trainer.data[b * 64:(b + 1) * 64], lambda draw, b=b: trainer.noise(b, draw), probes)
    leak_g = torch.stack(probes.values["leak_g"]).max().item()
    leak_d = torch.stack(probes.values["leak_d"]).max().item()
    if leaks:
        assert leak_g > 0 and leak_d > 0
    else:
        assert leak_g == 0 and leak_d == 0


def test_a_leaked_gradient_really_changes_gs_update(tiny_config, mnist):
    """Same state, same batch: G's step differs exactly when the stale gradient is kept."""
    moved = {}
    for zero_grad in ("own_after_step", "both_before_backward"):
        cfg = tiny_config.replace(freeze="eval_only", zero_grad=zero_grad, schedule="fixed", optimiser="sgd")
        trainer, step = make_step(cfg, mnist)
        before = [p.detach().clone() for p in trainer.G.parameters()]
        step.d_real(trainer.data[:64], Probes())
        step.d_fake(trainer.noise(0, 0), Probes())
        step.g_step(trainer.noise(0, 1), Probes())
        moved[zero_grad] = torch.cat([(p - b).flatten() for p, b in zip(trainer.G.parameters(), before)])
    assert not torch.allclose(moved["own_after_step"], moved["both_before_backward"])


# -- clipping ------------------------------------------------------------------------------

def _record_step_norms(opt, net, sink):
    original = opt.step

    def step(*a, **k):
        sink.append(grad_norm(net).item())
        return original(*a, **k)

    opt.step = step


def test_clipping_bounds_the_applied_gradient_and_records_the_pre_clip_norm(tiny_config, mnist):
    cfg = tiny_config.replace(clip_d=0.05, clip_g=0.05, schedule="fixed")
    trainer, step = make_step(cfg, mnist)
    applied_d, applied_g = [], []
    _record_step_norms(step.opt_d, trainer.D, applied_d)
    _record_step_norms(step.opt_g, trainer.G, applied_g)
    probes = Probes()
    for b in range(4):
        step.batch(trainer.data[b * 64:(b + 1) * 64], lambda draw, b=b: trainer.noise(b, draw), probes)
    pre_d = torch.stack(probes.values["grad_d"])
    assert max(applied_d) <= 0.05 * (1 + 1e-5) and max(applied_g) <= 0.05 * (1 + 1e-5)
    assert pre_d.max() > 0.05  # the bound was hit, so clipping really did something
    assert len(pre_d) == len(applied_d)


def test_without_clipping_the_applied_gradient_is_the_recorded_norm(tiny_config, mnist):
    trainer, step = make_step(tiny_config.replace(clip_d="off", schedule="fixed"), mnist)
    applied = []
    _record_step_norms(step.opt_d, trainer.D, applied)
    probes = Probes()
    step.batch(trainer.data[:64], lambda draw: trainer.noise(0, draw), probes)
    assert applied == pytest.approx([v.item() for v in probes.values["grad_d"]], rel=1e-6)


# -- G's loss, learning rate, optimiser ----------------------------------------------------

def test_saturating_g_loss_vanishes_when_d_rejects_fakes_and_non_saturating_does_not(tiny_config, mnist):
    norms = {}
    for g_loss in ("saturating", "non_saturating"):
        trainer, step = make_step(tiny_config.replace(g_loss=g_loss, clip_g="off", clamp="logits"), mnist)
        with torch.no_grad():
            trainer.D.net[-1].bias.fill_(-12.0)  # D(G(z)) ~ 6e-6
        probes = Probes()
        step.g_step(trainer.noise(0, 1), probes)
        norms[g_loss] = probes.values["grad_g"][0].item()
    assert norms["saturating"] < 1e-3 * norms["non_saturating"]


def test_lr_scales_the_first_sgd_step(tiny_config, mnist):
    moves = []
    for lr in (1e-3, 2e-3):
        trainer, step = make_step(tiny_config.replace(optimiser="sgd", lr_d=lr, clip_d="off", dtype="float64"), mnist)
        before = [p.detach().clone() for p in trainer.D.parameters()]
        step.d_real(trainer.data[:64], Probes())
        moves.append(torch.cat([(p - b).flatten() for p, b in zip(trainer.D.parameters(), before)]))
    torch.testing.assert_close(moves[1], 2 * moves[0], rtol=1e-9, atol=1e-15)


# -- schedules -----------------------------------------------------------------------------

def scripted(rule, batches):
    """Drive a rule with scripted losses: each batch is (tmp_loss, [l of each G step it may take])."""
    steps = []
    for tmp_loss, ls in batches:
        it = iter(ls)
        steps.append(rule.run(lambda t=tmp_loss: t, lambda: next(it)).steps)
    return steps


def test_adaptive_schedule_takes_the_hand_computed_number_of_g_steps():
    rule = AdaptiveRule(ScheduleConfig(g_loop_cap=5))
    batches = [
        (1.2, [-0.01, -0.05, -0.5]),  # rest_K 0, tmp < 1.75: loop until |l| >= 0.1 -> 3 steps; rest_K = int(1 + 3) = 4
        (1.2, []), (1.2, []), (1.2, []), (1.2, []),  # 4 D-only batches (rest_K 4 -> 0)
        (1.9, []),  # rest_K 0 but D's loss 1.9 >= 1.75: no G step
        (1.0, [-0.2]),  # one step: |l| = 0.2 ends the loop; rest_K = int(1 + 1.2) = 2
        (1.0, []), (1.0, []),  # 2 D-only batches
        (1.0, [-0.001] * 5),  # the cap (5) ends the loop; rest_K = int(1.006) = 1
        (1.0, []),
        (1.0, [-0.3]),
    ]
    assert scripted(rule, batches) == [3, 0, 0, 0, 0, 0, 1, 0, 0, 5, 0, 1]


def test_the_seed_says_l_minus_half_gives_rest_k_four():
    rule = AdaptiveRule(ScheduleConfig())
    scripted(rule, [(1.0, [-0.5])])
    assert rule.rest_k == 4


def test_fixed_schedule_trains_g_every_kth_batch():
    assert scripted(FixedRule(ScheduleConfig(schedule="fixed", d_steps=3)), [(9.0, [0.0])] * 9) == [0, 0, 1] * 3


def test_adaptive_probes_count_g_steps_and_caps_in_a_real_run(tiny_config, mnist):
    rec = Trainer(tiny_config.replace(g_loop_cap=3, epochs=1), mnist).run().history[0]
    assert rec.g_steps >= rec.g_batches >= 1
    assert rec.g_steps <= 3 * rec.g_batches
    fixed = Trainer(tiny_config.replace(schedule="fixed", d_steps=2, epochs=1), mnist).run().history[0]
    assert (fixed.g_steps, fixed.g_batches, fixed.g_capped) == (4, 4, 0)  # 8 batches, every 2nd


# -- determinism ---------------------------------------------------------------------------

def test_same_seed_same_history_and_different_seeds_differ(tiny_config, mnist):
    def losses(seed):
        h = Trainer(tiny_config.replace(seed=seed), mnist).run().history
        return [(r.loss_d, r.loss_g, r.d_real, r.d_fake, r.g_steps) for r in h]

    assert losses(3) == losses(3)
    assert losses(3) != losses(4)


# -- checkpoints ---------------------------------------------------------------------------

def test_a_run_resumed_from_its_checkpoint_equals_the_uninterrupted_run(tiny_config, mnist, tmp_path):
    cfg = tiny_config.replace(epochs=4, steps_per_epoch=6, stop_early=False)
    whole = Trainer(cfg, mnist).run()

    class Killed(Exception):
        pass

    def die_after_three(ev):
        if ev.record.epoch == 3:
            raise Killed

    ckpt = tmp_path / "trial.pt"
    with pytest.raises(Killed):
        Trainer(cfg, mnist, callbacks=[die_after_three]).run(checkpoint=ckpt, checkpoint_every=2)
    assert ckpt.is_file()
    resumed = Trainer(cfg, mnist).run(checkpoint=ckpt, checkpoint_every=2)
    assert resumed.resumed_from == 2  # epochs 1-2 restored, 3-4 trained again
    key = lambda h: [(r.epoch, r.loss_d, r.loss_g, r.d_real, r.d_fake, r.g_steps) for r in h]  # noqa: E731
    assert key(resumed.history) == key(whole.history)
    # a checkpoint of another config is ignored, not misapplied
    other = Trainer(cfg.replace(lr_d=2e-4), mnist).run(checkpoint=ckpt)
    assert other.resumed_from == 0
