"""The readings of what the seed leaves open (gan_core.readings): each key changes exactly what it says,
both engines agree on every one of them (float64, the reference trainer as the oracle), the uncapped
inner loop is watched by the hang detector, and the README's table is the generated one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import SMALL, assert_matches_reference, epoch_record, run_with_compaction

from gan_core import losses, readings
from gan_core.config import ConfigError, RunConfig, ScheduleConfig
from gan_core.judge.outcome import Judge
from gan_core.population import PopulationTrainer
from gan_core.probes import Probes
from gan_core.schedule import HUNG_BOUND, HUNG_ZERO, ZERO_GRADIENT_STEPS, AdaptiveRule
from gan_core.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent


def reading_configs():
    base = RunConfig().replace(**(SMALL | dict(epochs=2, steps_per_epoch=20)))
    return [
        base.replace(seed=0, g_loop_cap="off", lr_d=3e-3, g_loop_bound=30),           # to its bound: over budget
        base.replace(seed=1, rest_k_countdown="every_batch", lr_d=3e-3),
        base.replace(seed=2, tmp_loss="epoch_mean", lr_d=3e-3),
        base.replace(seed=3, g_loop_cap="off", rest_k_countdown="every_batch", tmp_loss="epoch_mean", lr_d=1e-3),
        base.replace(seed=4, beta1=0.5, g_loop_cap="off"),
        base.replace(seed=5, tmp_loss="epoch_mean", g_loss="non_saturating", lr_d=3e-3, lr_g=1e-3),
        base.replace(seed=0, g_loop_cap=20, lr_d=3e-3),                                # config 0, capped at 20
        base.replace(seed=6, tmp_loss="previous_epoch", lr_d=3e-3),                    # epoch 1 reads 0
        base.replace(seed=7, rest_k_epoch="reset", rest_k_countdown="untrained_batches", lr_d=3e-3, lr_g=1e-3),
        base.replace(seed=8, tmp_loss="previous_epoch", rest_k_epoch="reset", g_loop_cap="off", g_loop_bound=50),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("adam_impl", ["per_member", "where"])
def test_both_engines_agree_on_every_reading(mnist, adam_impl):
    configs = reading_configs()
    pop = PopulationTrainer(configs, mnist, adam_impl=adam_impl)
    results = pop.run()
    assert_matches_reference(pop, results, configs, mnist)
    assert results[0].verdict.label == "over_budget" and len(results[0].history) == 1  # stop_early off: it ends
    assert {r.verdict.label for r in results[1:]} != {"over_budget"}
    # The probe shows the reading: uncapped, a G phase ran past 20 steps (to the bound, 30); capped, it stopped at 20.
    hung, capped = results[0].history[0], results[6].history[0]
    assert (hung.g_phase_max, hung.g_hung_bound, hung.g_capped) == (30, 1, 0)
    assert capped.g_phase_max == 20 and capped.g_capped >= 1 and capped.g_hung_bound == 0


@pytest.mark.slow
def test_the_output_readings_share_one_population_and_each_member_matches_its_single_run(mnist):
    """G's output (none, sigmoid, tanh) and what the clamp receives (sigmoid, raw) are per member: one
    population trains every arm of reproduce-seed, each member as its own single run."""
    base = RunConfig().replace(**(SMALL | dict(epochs=2, steps_per_epoch=15)))
    configs = [base.replace(seed=0, d_output="raw", g_output="none", g_loop_cap="off", lr_d=1e-3),
               base.replace(seed=1, d_output="raw", g_output="tanh", lr_d=1e-3, g_loop_cap=20),
               base.replace(seed=2, d_output="raw", clamp="none", lr_d=1e-3, g_loop_cap=3),
               base.replace(seed=3, g_output="none"), base.replace(seed=4, g_output="tanh", lr_d=3e-3, g_loop_cap=20),
               base.replace(seed=5, g_output="sigmoid", g_loss="non_saturating", lr_d=3e-3),
               base.replace(seed=6, g_output="tanh", d_output="raw", g_loss="non_saturating")]
    pop = PopulationTrainer(configs, mnist)
    assert len(pop.g_out_rows) == 3 and pop.raw.sum() == 4
    results = run_with_compaction(pop)
    assert_matches_reference(pop, results, configs, mnist)
    for p, cfg in enumerate(configs):  # the scored samples too: each member's activation and pixel range
        twin = Trainer(cfg, mnist)
        twin.load_member_state(0, pop.member_state(p))
        assert torch.allclose(pop.generate(p, 16), twin.generate(0, 16), rtol=0, atol=1e-6), p  # both cast to float32


def test_uncapped_g_phases_run_past_the_cap_and_are_counted():
    """With a cap the phase stops at 20 and counts as capped; without, it runs on (and hangs at the bound)."""
    def losses_forever():
        return -0.001  # D rejects every sample: |l| never reaches 0.1

    capped = AdaptiveRule(ScheduleConfig(g_loop_cap=20))
    phase = capped.run(lambda: 1.0, losses_forever)
    assert (phase.steps, phase.capped, phase.hung) == (20, True, None)
    uncapped = AdaptiveRule(ScheduleConfig(g_loop_cap=None, g_loop_bound=500))
    phase = uncapped.run(lambda: 1.0, losses_forever)
    assert (phase.steps, phase.capped, phase.hung) == (500, False, HUNG_BOUND)
    ended = AdaptiveRule(ScheduleConfig(g_loop_cap=None))
    script = iter([-0.001] * 37 + [-0.2])
    phase = ended.run(lambda: 1.0, lambda: next(script))
    assert (phase.steps, phase.capped, phase.hung) == (38, False, None)  # past 20, ended by the seed's test


def test_a_zero_gradient_inside_the_uncapped_loop_is_hung_after_the_stated_steps():
    rule = AdaptiveRule(ScheduleConfig(g_loop_cap=None))
    phase = rule.run(lambda: 1.0, lambda: (-0.001, 0.0))
    assert (phase.steps, phase.hung) == (ZERO_GRADIENT_STEPS, HUNG_ZERO)
    moving = iter([(-0.001, 0.0)] * (ZERO_GRADIENT_STEPS - 1) + [(-0.001, 1e-6)] + [(-0.5, 0.0)])
    assert AdaptiveRule(ScheduleConfig(g_loop_cap=None)).run(lambda: 1.0, lambda: next(moving)).hung is None


@pytest.mark.parametrize("countdown, expected", [("untrained_batches", [1, 0, 1, 0, 1, 0]),
                                                 ("every_batch", [1, 1, 1, 1, 1, 1])])
def test_rest_k_counts_down_as_its_reading_says(countdown, expected):
    """|l| = 0.11 once per G phase gives rest_K = int(1 + 0.66) = 1: G rests a batch, or trains again at once."""
    rule = AdaptiveRule(ScheduleConfig(rest_k_countdown=countdown))
    seen = []
    for _ in range(6):
        seen.append(rule.run(lambda: 1.0, lambda: -0.11).steps)
    assert seen == expected


@pytest.mark.slow
def test_an_epoch_s_last_smaller_batch_is_kept_alike_by_both_engines(mnist):
    """last_batch = keep: 8,000 images in batches of 3,000 are two full batches and one of 2,000, on both
    engines, each member as its own single run (a noise draw and instance noise of the batch's own size)."""
    base = RunConfig().replace(**(SMALL | dict(epochs=2, steps_per_epoch=None, batch_size=3000, last_batch="keep")))
    configs = [base.replace(seed=0), base.replace(seed=1, instance_noise=0.1, lr_d=1e-3),
               base.replace(seed=2, tmp_loss="previous_epoch", rest_k_epoch="reset", g_loop_cap="off")]
    pop = PopulationTrainer(configs, mnist)
    assert pop.steps_per_epoch == 3
    assert_matches_reference(pop, pop.run(), configs, mnist)


@pytest.mark.parametrize("last_batch,sizes", [("keep", [3000, 3000, 2000]), ("drop", [3000, 3000])])
def test_last_batch_keeps_or_drops_the_images_left_over(mnist, last_batch, sizes):
    cfg = RunConfig().replace(**(SMALL | dict(epochs=1, steps_per_epoch=None, batch_size=3000)), last_batch=last_batch)
    trainer = Trainer(cfg, mnist)
    seen, batch = [], trainer.step.batch
    trainer.step.batch = lambda x, noise, probes, inst=None: (seen.append((len(x), len(noise(0)))), batch(
        x, noise, probes, inst))[1]
    trainer.train_one_epoch(0, 0)
    assert seen == [(n, n) for n in sizes]  # the latent batch is the batch's own size (Z = randn(batch_size, ...))
    pop = PopulationTrainer([cfg], mnist)
    acc, batch_p = [], pop.batch
    pop.batch = lambda x, step, a: (acc.append(x.shape[1]), batch_p(x, step, a))[1]
    pop.train_epoch(0, 0, [True])
    assert acc == sizes and pop.steps_per_epoch == len(sizes)


@pytest.mark.parametrize("reading", ["carry", "reset"])
def test_rest_k_at_an_epoch_s_first_batch_is_carried_or_reset(mnist, reading):
    """The seed assigns rest_K inside train_epoch: a local, afresh (0) each epoch; carried, it keeps where the
    last epoch left it. Both engines, at the first batch of epoch 2."""
    cfg = RunConfig().replace(**(SMALL | dict(epochs=2, steps_per_epoch=3)), rest_k_epoch=reading)
    trainer, pop = Trainer(cfg, mnist), PopulationTrainer([cfg], mnist)
    trainer.step.rule.rest_k = 5  # as the end of epoch 1 might leave it
    pop.rest_k[0] = 5.0
    first, batch, batch_p = [], trainer.step.batch, pop.batch
    trainer.step.batch = lambda *a, **k: (first.append(trainer.step.rule.rest_k), batch(*a, **k))[1]
    pop.batch = lambda *a, **k: (first.append(float(pop.rest_k[0])), batch_p(*a, **k))[1]
    trainer.train_one_epoch(1, 3)
    pop.train_epoch(1, 3, [True])
    assert first[0] == (0 if reading == "reset" else 5) and first[3] == first[0]


def test_tmp_loss_previous_epoch_reads_the_last_epoch_s_mean_and_zero_at_first(mnist):
    """The current_loss the seed's train_epoch receives: epoch 1 reads TMP_LOSS_START (0), epoch 2 the mean of
    epoch 1's D losses, on every batch; both engines agree, and a checkpoint carries it."""
    from gan_core.config import TMP_LOSS_START

    cfg = RunConfig().replace(**(SMALL | dict(epochs=2, steps_per_epoch=4)), tmp_loss="previous_epoch")
    trainer = Trainer(cfg, mnist)
    calls, run = [], trainer.step.rule.run
    trainer.step.rule.run = lambda tmp, g: (calls.append(float(tmp())), run(tmp, g))[1]
    first = trainer.train_one_epoch(0, 0)
    trainer.train_one_epoch(1, 4)
    assert calls[:4] == [TMP_LOSS_START] * 4
    assert calls[4:] == pytest.approx([first.loss_d] * 4, rel=1e-12)
    pop = PopulationTrainer([cfg], mnist)
    pop.train_epoch(0, 0, [True])
    assert float(pop.tmp_prev[0]) == pytest.approx(first.loss_d, rel=1e-12)
    pop.train_epoch(1, 4, [True])  # after epoch 2 both hold epoch 2's mean, as a checkpoint keeps it
    assert pop.member_state(0)["rule"]["tmp_prev"] == pytest.approx(trainer.member_state(0)["rule"]["tmp_prev"],
                                                                   rel=1e-12)


def test_tmp_loss_is_this_batch_s_d_loss_or_the_epoch_s_running_mean(mnist):
    for reading in ("batch", "epoch_mean"):
        cfg = RunConfig().replace(**(SMALL | dict(epochs=1, steps_per_epoch=6)), tmp_loss=reading)
        trainer = Trainer(cfg, mnist)
        probes, calls, run = Probes(), [], trainer.step.rule.run
        # what the rule would read on each batch (it reads it itself only when rest_K allows)
        trainer.step.rule.run = lambda tmp, g: (calls.append((len(probes.values["loss_d"]), tmp())), run(tmp, g))[1]
        trainer.step.start_epoch()
        for b in range(6):
            trainer.step.batch(trainer.data[b * 64:(b + 1) * 64], lambda d, b=b: trainer.noise(b, d), probes)
        d = [float(v) for v in probes.values["loss_d"]]
        want = [d[i - 1] if reading == "batch" else sum(d[:i]) / i for i, _ in calls]
        assert [v for _, v in calls] == pytest.approx(want, rel=1e-12), reading
        assert len(calls) == 6 and (reading == "batch" or calls[-1][1] != pytest.approx(d[-1]))


def test_the_clamp_acts_on_a_raw_output_where_a_sigmoid_never_reaches_it():
    logits = torch.tensor([1.5, 0.5, -0.2], dtype=torch.float64, requires_grad=True)
    real = losses.d_real_loss(logits, "clamp", 1e-3, output="raw")
    real.backward()
    assert logits.grad[0] == 0 and logits.grad[2] == 0 and logits.grad[1] != 0  # above 1 and below eps: dead
    assert real.item() == pytest.approx(-(0.0 + torch.log(torch.tensor(0.5)).item() + torch.log(torch.tensor(1e-3)).item()) / 3)
    assert int(losses.clamp_hits(logits.detach(), 1e-3, real=True, output="raw")) == 2
    assert int(losses.clamp_hits(logits.detach(), 1e-3, real=True)) == 0  # sigmoid: 0.82, 0.62, 0.45
    fake = torch.tensor([-0.3, 0.4], dtype=torch.float64, requires_grad=True)
    losses.d_fake_loss(fake, "clamp", 1e-3, output="raw").backward()
    assert fake.grad[0] == 0 and fake.grad[1] != 0  # D(G(z)) below 0 is clamped to 0: the lower bound acts
    assert int(losses.clamp_hits(fake.detach(), 1e-3, real=False, output="raw")) == 1


def test_a_raw_output_run_whose_g_gradient_vanishes_is_sealed_hung(mnist):
    cfg = RunConfig().replace(**(SMALL | dict(epochs=3, steps_per_epoch=30, dtype="float32")), d_output="raw",
                              g_loop_cap="off", lr_d=1e-3)  # SMALL runs every epoch: stop_early is off
    result = Trainer(cfg, mnist).run()
    v = result.verdict
    assert v.label == "hung" and v.sealed and v.signals["mechanism"] == HUNG_ZERO
    assert len(result.history) == 1 and result.history[0].g_hung_zero == 1
    assert result.history[0].batches < 30  # nothing after the hung batch ran
    assert "exactly zero" in v.evidence and f"{ZERO_GRADIENT_STEPS} steps" in v.evidence


def test_the_judge_seals_a_hung_or_over_budget_epoch_before_anything_else():
    v = Judge().observe(epoch_record(3, g_hung_bound=1, g_phase_max=1000, loss_d=0.01, d_fake=0.001))
    assert v.label == "over_budget" and v.epoch == 3 and "1000 G steps" in v.evidence


def test_g_output_none_is_g_s_last_layer_scored_clipped(mnist):
    cfg = RunConfig().replace(**(SMALL | dict(epochs=1, steps_per_epoch=2)), g_output="none")
    trainer = Trainer(cfg, mnist)
    z = torch.randn(8, 16, dtype=torch.float64)
    raw = trainer.G.net(z)
    assert torch.equal(trainer.G(z), raw) and (raw < 0).any()
    images = trainer.generate(0, 8)
    assert images.min() >= 0 and images.max() <= 1


def test_reading_keys_are_validated_in_one_line():
    for flat, text in (({"rest_k_countdown": "sometimes"}, "rest_k_countdown must be one of"),
                       ({"g_loop_cap": 0}, "g_loop_cap must be > 0"), ({"g_loop_bound": 10**7}, "at most"),
                       ({"d_output": "raw", "clamp": "logits"}, "d_output raw needs clamp"),
                       ({"g_output": "relu"}, "g_output must be one of")):
        with pytest.raises(ConfigError, match=text):
            RunConfig().replace(**flat)
    assert RunConfig().replace(g_loop_cap="off").to_flat()["g_loop_cap"] == "off"
    assert RunConfig().replace(g_loop_cap="off").schedule.g_loop_cap is None


def test_every_reading_names_a_key_its_literal_option_is_valid_and_the_literal_config_builds():
    cfg = RunConfig().replace(**readings.LITERAL)
    flat = cfg.to_flat()
    assert readings.differences(flat) == []
    assert readings.differences(RunConfig().to_flat())  # our defaults are not the literal reading
    for r in readings.READINGS:
        assert r.seed_line and r.why and r.choices, r.key


def test_the_readme_holds_the_generated_readings_table():
    assert readings.markdown() in (ROOT / "README.md").read_text()


def test_train_help_lists_every_reading_key_with_its_choices(capsys, monkeypatch):
    from conftest import main_cli

    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = main_cli(["train", "--help"], capsys)
    flat = " ".join(out.split())
    assert code == 0
    for key in ("--g-loop-cap", "--g-loop-bound", "--rest-k-countdown", "--tmp-loss", "--d-output", "--g-output"):
        assert key in flat, key
    for choice in ("untrained_batches|every_batch", "batch|epoch_mean", "sigmoid|raw", "sigmoid|tanh|none"):
        assert choice in flat.replace(" ", ""), choice


def test_show_lists_the_readings_of_a_study(capsys):
    from conftest import main_cli

    code, out, _ = main_cli(["show", "reproduce-seed"], capsys)
    assert code == 0
    text = " ".join(out.split())
    assert "readings of what the seed leaves open" in text
    assert "g_loop_cap off off, 20" in text and "rest_k_countdown every_batch every_batch, untrained_batches" in text


def test_a_run_past_the_stated_bound_is_over_budget_and_counted_apart(mnist):
    """A G phase that reaches g_loop_bound ran past what the study follows the literal loop for: not a
    failure of the seed's loop (it might have come back), so the run is over budget, and tables and verdicts
    count it apart; only a zero gradient inside the loop (it would never return) is hung."""
    import dataclasses

    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    from sweeps.report.data import load_study_data
    from sweeps.report.tables import outcome_table
    from sweeps.report.verdicts import claim_verdict

    v = Judge().observe(epoch_record(3, g_hung_bound=1, g_phase_max=1000))
    assert v.label == "over_budget" and v.sealed and "ran past its stated bound" in v.evidence
    v = Judge().observe(epoch_record(3, g_hung_zero=1, g_phase_max=60))
    assert v.label == "hung" and "would never return" in v.evidence
    s = optuna.create_study()
    s.set_user_attr("spec", {"source": "fixture", "metric": "fld", "claims": ["headline"], "fixed": {}})
    for seed, (g_output, outcome) in enumerate([("none", "success"), ("none", "success"), ("none", "success"),
                                                ("none", "over_budget"), ("tanh", "poor_quality")]):
        s.add_trial(create_trial(params={"g_output": g_output}, distributions={"g_output": CategoricalDistribution(
            ["none", "tanh"])}, value=60.0, state=TrialState.COMPLETE, user_attrs={
            "seed": seed, "outcome": outcome, "sealed": outcome == "over_budget", "final_fld": 60.0,
            "epochs_trained": 8, "steps": 1000, "train_images": 8000,
            "config": {"g_output": g_output, "dataset": "mnist-10k", "batch_size": 64, "epochs": 8}}))
    data = load_study_data(s)
    table = outcome_table(data, "g_output").set_index("g_output")
    assert table.loc["none", "runs"] == 3 and table.loc["none", "over_budget"] == 1
    assert table.loc["none", "success_rate"] == 1.0  # 3 of 3 decided runs, not 3 of 4
    verdict = claim_verdict(data, "headline")
    assert "3 of 3 runs succeeded" in verdict.sentence and "1 run(s) ran past" in verdict.sentence
    # where the headline is shown, its data: steps and a split with fewer distinct images than the seed's
    assert ("Its runs trained up to 1,000 steps of 64 on 8,000 training images, 7.5 times fewer distinct "
            "images than MNIST's 60,000 the seed trained on.") in verdict.sentence
