"""The shipped evaluator, its scale, and the outcome judge on constructed sets with known answers."""

import dataclasses
import json
import math
import shutil

import pytest
import torch
from conftest import assert_one_line_error, epoch_record

from gan_core.judge import constructed
from gan_core.judge.classifier import new_classifier, train_classifier, uint8_to_unit
from gan_core.data import bundled_mnist
from gan_core.judge.evaluator import Evaluator
from gan_core.judge.weights import (
    EvaluatorError,
    load_shipped,
    sha256,
    shipped_paths,
)
from gan_core.judge.outcome import Judge, label_quality
from gan_core.trainer import Trainer


def test_the_shipped_weights_match_their_record_and_load_without_training(evaluator):
    weights, record_path = shipped_paths()
    record = json.loads(record_path.read_text())
    assert sha256(weights) == record["sha256"]
    assert not evaluator.trained_now and "shipped" in evaluator.source
    assert evaluator.accuracy == record["accuracy"] >= 0.97
    assert weights.stat().st_size < 2_000_000  # small enough to ship


def test_a_corrupt_shipped_file_is_a_one_line_error(tmp_path, monkeypatch):
    weights, record = shipped_paths()
    bad = tmp_path / weights.name
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    bad.write_bytes(bytes(blob))
    shutil.copy(record, tmp_path / record.name)
    monkeypatch.setattr("gan_core.judge.weights.shipped_paths", lambda name="mnist": (bad, tmp_path / record.name))
    with pytest.raises(EvaluatorError, match="corrupt") as info:
        load_shipped("mnist", 10)
    assert "\n" not in str(info.value)


def test_a_corrupt_shipped_file_stops_the_cli_in_one_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from sweeps.cli import app

    weights, record = shipped_paths()
    (tmp_path / weights.name).write_bytes(weights.read_bytes()[:1000])  # truncated
    shutil.copy(record, tmp_path / record.name)
    monkeypatch.setattr("gan_core.judge.weights.shipped_paths",
                        lambda name="mnist": (tmp_path / weights.name, tmp_path / record.name))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["train", "--no-track", "--dataset", "mnist-10k", "--epochs", "1",
                                   "--steps-per-epoch", "2", "--out", str(tmp_path / "run")])
    assert_one_line_error(res.stderr, res.exit_code, "shipped evaluator")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_retraining_reproduces_the_recorded_accuracy():
    record = json.loads(shipped_paths()[1].read_text())
    ds = bundled_mnist()
    clf = new_classifier(ds.num_classes)
    with torch.random.fork_rng():
        acc = train_classifier(clf, ds, torch.device("cpu"))
    assert abs(acc - record["accuracy"]) <= 0.005, (acc, record["accuracy"])


@pytest.fixture(scope="module")
def checked(evaluator, mnist):
    """Every constructed set scored and labelled now (the slow part, shared by the tests below)."""
    return constructed.check(evaluator, mnist)


@pytest.mark.slow
def test_the_shipped_calibration_is_what_the_evaluator_computes_now(evaluator, checked):
    assert {r.set.name for r in checked} == set(evaluator.calibration)
    for r in checked:
        for key, value in r.quality.items():
            recorded = evaluator.calibration[r.set.name][key]
            assert value == pytest.approx(recorded, rel=0.02, abs=0.01), (r.set.name, key)


@pytest.mark.slow  # its fixture scores every constructed set (about a minute); the quick tier judges three
def test_the_judge_agrees_with_a_researcher_on_every_unambiguous_constructed_set(checked):
    decided = [r for r in checked if r.agrees is not None]
    assert len(decided) >= 20 and len(checked) - len(decided) >= 3  # arguable sets are shown, not tested
    wrong = [(r.set.name, r.label, r.set.expected, r.reason) for r in decided if not r.agrees]
    assert not wrong
    kinds = {r.set.expected for r in decided}
    assert kinds == {"success", "mode_collapse", "poor_quality"}


def test_a_memorised_set_is_mode_collapse_even_when_every_image_is_real(evaluator, mnist):
    real = uint8_to_unit(mnist.clf_images[:50]).reshape(50, -1)
    q = evaluator.quality(real.repeat(40, 1))
    label, why = label_quality(q, evaluator.thresholds())
    assert label == "mode_collapse" and q.legible > 0.9 and "distinct" in why and "digit-like" in why
    assert q.recall < 0.05


def test_real_digits_are_a_success_and_noise_is_poor_quality(evaluator, mnist):
    q = evaluator.quality(uint8_to_unit(mnist.clf_images[:2000]))
    assert q.coverage == 10 and q.junk < 0.02 and q.fld < 20 and q.legible > 0.9 and q.distinct > 0.95
    assert label_quality(q, evaluator.thresholds())[0] == "success"
    g = torch.Generator().manual_seed(0)
    q = evaluator.quality(torch.rand(2000, 784, generator=g))
    label, why = label_quality(q, evaluator.thresholds())
    assert label == "poor_quality" and q.junk > 0.9 and "not digit-like" in why


def _near(q, **changes):
    return dataclasses.replace(q, **changes)


def test_near_a_threshold_a_label_holds_between_near_identical_evaluations(evaluator):
    """A class dipping to 4% does not cost a success; nor do successive grids a hair apart."""
    th = evaluator.thresholds()
    good = constructed_quality(evaluator, "one_class_at_4pct")
    assert good.coverage == 9 and good.classes >= 9.5  # the old hard 5% cut called this mode_collapse
    assert label_quality(good, th)[0] == "success"
    dipped = _near(good, classes=th.num_classes - th.missing_classes - 0.2, legible=th.success_legible - 0.02,
                   fld=th.success_fld * 1.05)
    assert label_quality(dipped, th)[0] != "success"  # on its own, short of success ...
    assert label_quality(dipped, th, previous="success")[0] == "success"  # ... but a success holds
    far = _near(good, classes=th.num_classes - 2)
    assert label_quality(far, th, previous="success")[0] == "mode_collapse"  # a real drop still counts

    judge = Judge(th)
    for epoch, q in enumerate([good, dipped, good, dipped, dipped], start=1):
        judge.observe(epoch_record(epoch, quality=q))
    assert [lab for _, lab, _ in judge.labels()] == ["success"] * 5
    v = judge.final()
    assert v.label == "success" and v.epoch == 1


def constructed_quality(evaluator, name):
    from gan_core.records import Quality

    return Quality(**evaluator.calibration[name])


def test_dead_gradients_are_stalled_and_sealed_with_the_mechanism():
    judge = Judge()
    assert judge.observe(epoch_record(1)) is None
    dead = dict(grad_d=0.0, grad_d_max=0.0, grad_g=0.0, grad_g_max=0.0, d_real=1.0, d_fake=1.0, clamp_rate=1.0)
    assert judge.observe(epoch_record(2, **dead)) is None  # one epoch is not a window
    v = judge.observe(epoch_record(3, **dead))
    assert v.label == "stalled" and v.sealed and v.epoch == 2
    assert v.signals["mechanism"] == "dead_gradients" and "exactly zero" in v.evidence


def test_a_saturated_d_with_a_silent_g_is_stalled():
    judge = Judge()
    sat = dict(grad_g=0.0, grad_g_max=0.0, grad_d=1e-9, grad_d_max=1e-9, d_real=0.9999, d_fake=0.9998)
    judge.observe(epoch_record(1, **sat))
    v = judge.observe(epoch_record(2, **sat))
    assert v.label == "stalled" and v.signals["mechanism"] == "d_saturated"
    live = Judge()  # D saturated but G still learning: not dead
    for e in (1, 2, 3):
        assert live.observe(epoch_record(e, d_real=0.9999, d_fake=0.9998)) is None


def test_a_run_whose_d_saturates_under_the_clamp_is_labelled_stalled(mnist, evaluator):
    """Our default reading of the seed at lr 1e-2: D says 1 to everything, the clamp zeroes every gradient."""
    from gan_core.config import RunConfig

    cfg = RunConfig().replace(dataset="mnist-10k", device="cpu", lr_d=1e-2, lr_g=1e-2, epochs=8,
                              steps_per_epoch=40, eval_every=4, eval_samples=500)
    result = Trainer(cfg, mnist, evaluator).run()
    v = result.verdict
    assert v.label == "stalled" and v.sealed and result.stopped_early, v.evidence
    assert v.signals["mechanism"] in ("dead_gradients", "d_saturated")
    assert result.history[-1].grad_g_max == 0.0


def test_a_nan_generator_is_diverged_and_the_run_stops(tiny_config, mnist, evaluator):
    trainer = Trainer(tiny_config.replace(epochs=3), mnist, evaluator)
    with torch.no_grad():
        trainer.G.net[0].weight.fill_(math.nan)
    result = trainer.run()
    assert result.verdict.label == "diverged" and result.verdict.sealed
    assert len(result.history) == 1 and "non-finite" in result.verdict.evidence


def test_the_judge_labels_a_sustained_d_win_as_d_overpowered():
    judge = Judge()
    assert judge.observe(epoch_record(1, loss_d=1.2, d_fake=0.4)) is None
    assert judge.observe(epoch_record(2, loss_d=0.01, d_fake=0.001)) is None  # one epoch is not a sustained window
    v = judge.observe(epoch_record(3, loss_d=0.02, d_fake=0.002))
    assert v.label == "d_overpowered" and v.epoch == 2 and v.sealed


@pytest.mark.slow
def test_an_evaluator_for_other_data_is_trained_once_and_a_corrupt_cache_is_retrained(tmp_path, monkeypatch):
    from gan_core.data import Dataset

    monkeypatch.setenv("GAN_SWEEP_CACHE", str(tmp_path))
    monkeypatch.setattr("gan_core.judge.classifier.CLF_EPOCHS", 1)
    m = bundled_mnist()
    small = Dataset("other", "a test set", m.images[:3000], m.labels[:3000], m.clf_images[:2500],
                    m.clf_labels[:2500], m.held_out_images[:2000], m.held_out_labels[:2000])
    first = Evaluator(small)
    assert first.trained_now and first.cache_path.is_file() and "trained now" in first.source
    again = Evaluator(small)
    assert not again.trained_now and again.accuracy == first.accuracy
    first.cache_path.write_bytes(b"not a checkpoint")
    third = Evaluator(small)
    assert third.trained_now and third.accuracy == first.accuracy


def test_calibrate_exits_1_when_the_judge_disagrees_on_a_set_with_a_known_label(monkeypatch, evaluator):
    from typer.testing import CliRunner

    from sweeps.cli import app

    q = evaluator.calibration["real"]
    sets = {name: constructed.ConstructedSet(name, name, expected, "why", torch.zeros(1, 784))
            for name, expected in (("a", "success"), ("b", None))}
    rows = [constructed.Check(sets["a"], q, "success", "r"), constructed.Check(sets["b"], q, "poor_quality", "r")]
    monkeypatch.setattr("gan_core.judge.constructed.check", lambda ev, ds: rows)
    res = CliRunner().invoke(app, ["calibrate", "--no-panel"])
    assert res.exit_code == 0 and "agrees on 1 of 1" in res.stderr, res.output
    rows[0] = constructed.Check(sets["a"], q, "mode_collapse", "r")
    res = CliRunner().invoke(app, ["calibrate", "--markdown", "--no-panel"])
    assert res.exit_code == 1 and "disagrees on: a" in res.stderr and "| a |" in res.stdout


def test_a_grid_a_third_or_half_of_which_is_not_digits_is_never_a_success(evaluator):
    th = evaluator.thresholds()
    for name in ("mix_scribbles_33", "mix_scribbles_50", "mix_noise_33", "mix_noise_50", "mix_blobs_33",
                 "mix_blobs_50", "mix_arcs_33", "mix_arcs_50", "mix_lumps_33", "mix_lumps_50"):
        label, why = label_quality(constructed_quality(evaluator, name), th)
        assert label == "poor_quality", (name, why)
    third = constructed_quality(evaluator, "mix_scribbles_33")
    assert third.fld < th.success_fld and third.precision > th.precision_min  # FLD and precision alone would pass it
    assert third.legible > th.success_legible  # and so would legibility: a working GAN's digits are imperfect
    assert "not digits at all" in label_quality(third, th)[1]  # the classifier's not-data share tells it
    # the second junk family, never trained or tuned on: the classifier reads lumps as digits, their pixels do not
    lumps = constructed_quality(evaluator, "mix_lumps_33")
    assert lumps.junk < th.junk_max and lumps.legible > th.success_legible and lumps.fld < th.success_fld
    assert "far from every real digit in pixels" in label_quality(lumps, th)[1]
    assert label_quality(constructed_quality(evaluator, "mix_scribbles_10"), th)[0] == "success"  # a tenth still does


def test_precision_and_recall_against_kept_real_radii_are_the_numbers_computed_afresh(evaluator):
    """The evaluator keeps its reference features' k-NN radii; scoring with them changes no bit."""
    from gan_core.judge import metrics

    assert torch.equal(evaluator.ref_radii, metrics.knn_radii(evaluator.ref_features))
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(400, 16, generator=gen), torch.randn(300, 16, generator=gen) * 1.3 + 0.2
    fresh = metrics.precision_recall(real, fake)
    assert metrics.precision_recall(real, fake, real_radii=metrics.knn_radii(real)) == fresh
    assert 0 < fresh[0] < 1 and 0 < fresh[1] < 1  # neither trivially all nor none


def test_the_classifier_s_pool_is_torch_s_max_pool_bit_for_bit_and_trains_through_torch_s():
    from gan_core.judge.classifier import MaxPool2x2

    pool, gen = MaxPool2x2(), torch.Generator().manual_seed(0)
    for shape in ((3, 32, 26, 26), (2, 64, 11, 11), (1, 1, 5, 4)):  # even, odd (floor mode), tiny
        x = torch.randn(*shape, generator=gen).relu()
        x[0, 0, 0, 0] = float("nan")
        with torch.no_grad():
            fast, torchs = pool(x), torch.nn.functional.max_pool2d(x, 2)
        assert fast.shape == torchs.shape and torch.equal(fast.nan_to_num(-1), torchs.nan_to_num(-1)), shape
        assert torch.equal(fast.isnan(), torchs.isnan())
    x = torch.zeros(1, 1, 4, 4, requires_grad=True)  # all ties: torch's pool sends each gradient to one input
    pool(x).sum().backward()
    assert x.grad.sum() == 4 and x.grad.count_nonzero() == 4


# -- the kept real side ----------------------------------------------------------------------------

def _same_real_side(a: Evaluator, b: Evaluator) -> None:
    for name in ("ref_features", "ref_mu", "ref_cov", "ref_radii"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert (a.duplicate_radius, a.ref_spread) == (b.duplicate_radius, b.ref_spread)


@pytest.fixture(scope="module")
def computed(mnist):
    """An evaluator whose real side was computed now, kept nowhere: what every kept side must equal."""
    return Evaluator(mnist, use_cache=False)


@pytest.fixture(scope="module")
def kept_side(mnist, tmp_path_factory):
    """(file name, bytes) of the side an evaluator keeps for `mnist` on first use."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GAN_SWEEP_CACHE", str(cache))
        Evaluator(mnist)
    [kept] = (cache / "evaluator").glob("reference-*.pt")
    return kept.name, kept.read_bytes()


def test_the_real_side_is_kept_once_and_read_back_bit_for_bit(tmp_path, monkeypatch, mnist, computed):
    monkeypatch.setenv("GAN_SWEEP_CACHE", str(tmp_path))
    Evaluator(mnist, use_cache=False)
    assert not (tmp_path / "evaluator").exists()  # use_cache=False keeps nothing
    first = Evaluator(mnist)
    [kept] = (tmp_path / "evaluator").glob("reference-*.pt")
    inode = kept.stat().st_ino
    second = Evaluator(mnist)
    assert kept.stat().st_ino == inode  # read back, not computed and written again
    _same_real_side(first, computed)
    _same_real_side(second, computed)
    noise = torch.rand(64, 784, generator=torch.Generator().manual_seed(0))
    assert second.quality(noise) == computed.quality(noise)


@pytest.mark.parametrize("planted", ["garbage", "truncated", "wrong shapes", "not finite", "a link"])
def test_a_kept_real_side_that_is_not_whole_is_computed_again(tmp_path, monkeypatch, mnist, computed, kept_side,
                                                              planted):
    monkeypatch.setenv("GAN_SWEEP_CACHE", str(tmp_path))
    name, good = kept_side
    (tmp_path / "evaluator").mkdir()
    kept, elsewhere = tmp_path / "evaluator" / name, tmp_path / "elsewhere.pt"
    kept.write_bytes(good)
    side = torch.load(kept, weights_only=True)
    if planted == "garbage":
        kept.write_bytes(b"not a torch file")
    elif planted == "truncated":
        kept.write_bytes(good[: len(good) // 2])
    elif planted == "wrong shapes":
        torch.save(side | {"radii": side["radii"][:-1]}, kept)
    elif planted == "not finite":
        torch.save(side | {"spread": torch.tensor(float("nan"), dtype=torch.float64)}, kept)
    else:  # a link to a whole side: not followed (what it points at could be anything), and not written through
        elsewhere.write_bytes(good)
        kept.unlink()
        kept.symlink_to(elsewhere)
    again = Evaluator(mnist)
    _same_real_side(again, computed)
    assert not kept.is_symlink() and kept.read_bytes() == good  # replaced by the whole side
    if planted == "a link":
        assert elsewhere.read_bytes() == good


def test_a_cache_folder_that_cannot_be_written_costs_only_the_time(tmp_path, monkeypatch, mnist, computed):
    (tmp_path / "a file").write_text("x")
    monkeypatch.setenv("GAN_SWEEP_CACHE", str(tmp_path / "a file" / "cache"))  # cannot be made
    _same_real_side(Evaluator(mnist), computed)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "evaluator").symlink_to(tmp_path / "elsewhere")
    monkeypatch.setenv("GAN_SWEEP_CACHE", str(tmp_path / "linked"))  # gan-sweep does not write through links
    _same_real_side(Evaluator(mnist), computed)
    assert not list((tmp_path / "elsewhere").iterdir())


def test_a_kept_real_side_is_named_by_everything_it_depends_on():
    from gan_core.judge import metrics, reference_cache

    torch.manual_seed(0)
    model, images = torch.nn.Linear(3, 2), torch.arange(12, dtype=torch.uint8).reshape(2, 6)
    key = lambda m=model, x=images, dev="cpu", code=(metrics,): reference_cache.digest(  # noqa: E731
        m, x, torch.device(dev), code)
    assert key() == key()
    nudged = torch.nn.Linear(3, 2)
    nudged.load_state_dict(model.state_dict())
    with torch.no_grad():
        nudged.weight[0, 0] = torch.nextafter(nudged.weight[0, 0], torch.tensor(1.0))  # one weight, one ulp
    other = images.clone()
    other[1, 5] += 1
    threads = torch.get_num_threads()
    torch.set_num_threads(threads % 2 + 1)
    try:
        other_threads = key()
    finally:
        torch.set_num_threads(threads)
    assert len({key(), key(m=nudged), key(x=other), key(x=images.reshape(3, 4)), key(dev="meta"),
                key(code=(constructed,)), other_threads}) == 7


def test_the_classifier_s_passes_in_chunks_change_no_feature(evaluator, monkeypatch):
    from gan_core.judge import evaluator as E

    images = uint8_to_unit(bundled_mnist().held_out_images[:300]).reshape(300, -1)
    chunked = evaluator.quality(images)
    monkeypatch.setattr(E, "CPU_CHUNK", 10_000)  # one pass over all of them
    assert evaluator.quality(images) == chunked


def test_k_nn_radii_are_the_k_th_nearest_other_row_s_distance_as_kthvalue_defines_it():
    from gan_core.judge import metrics

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(600, 16, generator=gen)
    x[300:320] = x[:20]  # ties: rows with a twin at distance 0
    for k in (1, 3, 5):
        assert torch.equal(metrics.knn_radii(x, k), torch.cdist(x.double(), x.double()).kthvalue(k + 1, dim=1).values)
