"""The evaluator's scale and the outcome labels it supports."""

import math

import torch

from gan_core.evaluator import uint8_to_unit
from gan_core.outcome import Judge, label_quality
from gan_core.trainer import Trainer


def test_the_classifier_is_accurate_and_cached(evaluator, mnist):
    assert evaluator.accuracy >= 0.97
    assert evaluator.cache_path.is_file()
    again = type(evaluator)(mnist)
    assert not again.trained_now and again.accuracy == evaluator.accuracy


def test_real_held_out_digits_cover_every_class_at_low_fld_and_are_a_success(evaluator, mnist):
    q = evaluator.quality(uint8_to_unit(mnist.clf_images[:2000]))  # real digits the FLD reference never saw
    assert q.coverage == 10 and q.junk < 0.02 and q.fld < 20 and q.score > 8
    assert label_quality(q, evaluator.thresholds())[0] == "success"


def test_one_repeated_class_is_mode_collapse(evaluator, mnist):
    sevens = uint8_to_unit(mnist.clf_images[mnist.clf_labels == 7][:2000])
    q = evaluator.quality(sevens)
    assert q.coverage == 1 and q.class_kl > 2.0 and q.fld > 1000
    assert label_quality(q, evaluator.thresholds())[0] == "mode_collapse"


def test_noise_is_poor_quality(evaluator):
    g = torch.Generator().manual_seed(0)
    for noise in (torch.rand(2000, 784, generator=g), (0.5 + 0.25 * torch.randn(2000, 784, generator=g)).clamp(0, 1)):
        q = evaluator.quality(noise)
        assert q.junk > 0.9 and q.fld > 1000
        assert label_quality(q, evaluator.thresholds())[0] == "poor_quality"


def test_the_calibration_is_ordered_and_sets_the_success_threshold(evaluator):
    cal = {k: v["fld"] for k, v in evaluator.calibration.items()}
    assert cal["real"] < cal["real_noisy"] < cal["one_class"] < min(cal["gaussian_noise"], cal["uniform_noise"])
    assert evaluator.thresholds().success_fld == cal["real_noisy"]
    assert evaluator.calibration["untrained_g"]["junk"] > 0.9  # an untrained G is not data: poor_quality


def test_a_nan_generator_is_diverged_and_the_run_stops(tiny_config, mnist, evaluator):
    trainer = Trainer(tiny_config.replace(epochs=3), mnist, evaluator)
    with torch.no_grad():
        trainer.G.net[0].weight.fill_(math.nan)
    result = trainer.run()
    assert result.verdict.label == "diverged" and result.verdict.sealed
    assert len(result.history) == 1 and "non-finite" in result.verdict.evidence


def test_the_judge_labels_a_sustained_d_win_as_d_overpowered():
    from gan_core.probes import EpochRecord

    def rec(epoch, loss_d, d_fake):
        return EpochRecord(epoch=epoch, step=epoch, loss_d=loss_d, loss_g=-0.001, d_real=0.999, d_fake=d_fake,
                           clamp_rate=0.0, grad_d=0.1, grad_d_max=0.2, grad_g=0.01, grad_g_max=0.02,
                           frozen_grad_d=0.0, frozen_grad_g=0.0, leak_d=0.0, leak_g=0.0, g_steps=20, g_batches=1,
                           g_capped=1, nonfinite=0, weights_finite=True, batches=10, seconds=1.0, samples_per_s=1.0)

    judge = Judge()
    assert judge.observe(rec(1, 1.2, 0.4)) is None
    assert judge.observe(rec(2, 0.01, 0.001)) is None  # one epoch is not a sustained window
    v = judge.observe(rec(3, 0.02, 0.002))
    assert v.label == "d_overpowered" and v.epoch == 2 and v.sealed
