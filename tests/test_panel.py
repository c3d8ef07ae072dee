"""The panel of real runs the judge answers to (`gan_core.judge.panel`), the untrained label, and the
pixel-space realism measure that tells junk a classifier reads as digits from digits."""

from collections import Counter

import pytest
import torch

from gan_core.judge import panel
from gan_core.judge.labels import LABELS
from gan_core.judge.outcome import label_quality
from gan_core.records import Quality


def test_the_panel_ships_labelled_sets_split_by_run_with_how_each_label_was_made():
    import json

    sets = panel.load()
    assert len(sets) + sum(len(s.twins) for s in sets) >= 120 and len(sets) >= 90
    assert set(panel.EYE_LABELS) <= set(LABELS)
    for s in sets:
        assert len(s.eye) == 3 * (1 + len(s.twins)) and set(s.eye) <= set(panel.EYE_LABELS), s.id
        assert {"study", "params", "seed", "epoch"} <= set(s.meta), s.id
    by_run = {}
    for s in sets:
        for sid in (s.id, *s.twins):
            by_run.setdefault(panel.run_of(sid), set()).add(s.half)
    assert all(len(halves) == 1 for halves in by_run.values())  # no run, and so no image, is seen on both sides
    # every built-in claim study is in it, and each half holds every label a grid can show
    assert {"lr-study", "clamp-study", "clip-study", "freeze-study", "schedule-study", "g-loss-study", "ablation",
            "cures-study", "reproduce-seed"} <= {s.meta["study"] for s in sets}
    for half in panel.HALVES:
        assert set(Counter(s.label for s in sets if s.half == half)) >= set(panel.EYE_LABELS), half
    # twins are the sets with identical pixels, and the only ones
    index = json.loads((panel.PANEL_DIR / "index.json").read_text())
    for s in sets:
        assert {index[t]["pixels_sha256"] for t in s.twins} <= {index[s.id]["pixels_sha256"]}
    assert len({index[s.id]["pixels_sha256"] for s in sets}) == len(sets)
    first = sets[0].samples()
    assert first.shape == (2000, 784) and 0 <= float(first.min()) and float(first.max()) <= 1


def test_runs_that_share_a_snapshot_are_one_run_to_the_split():
    index = {"a-00-s1-e002": {"pixels_sha256": "x"}, "a-00-s1-e008": {"pixels_sha256": "y"},
             "b-03-s1-e002": {"pixels_sha256": "x"}, "c-01-s1-e002": {"pixels_sha256": "z"}}
    labels = {k: {"eye": ["untrained"] * 3} for k in index}
    halves = panel.split(index, labels)
    assert halves["a-00-s1-e002"] == halves["a-00-s1-e008"] == halves["b-03-s1-e002"]  # a and b: one run
    assert halves["c-01-s1-e002"] != halves["a-00-s1-e002"]  # dealt alternately


def test_agreement_counts_success_or_not_and_the_failure_s_kind_apart():
    sets = [panel.PanelSet("a-00-s1-e001", {}, ("success",) * 3, "tune"),
            panel.PanelSet("b-00-s1-e001", {}, ("untrained", "untrained", "mode_collapse"), "tune"),
            panel.PanelSet("c-00-s1-e001", {}, ("poor_quality",) * 3, "tune"),
            panel.PanelSet("d-00-s1-e001", {}, ("success", "poor_quality", "untrained"), "tune")]
    judged = {"a-00-s1-e001": "success", "b-00-s1-e001": "mode_collapse", "c-00-s1-e001": "poor_quality",
              "d-00-s1-e001": "success"}
    a = panel.agreement(sets, judged, "tune")
    # d: 1 yes, 2 no -> a failure the judge calls a success; d's kind is no majority's, so b and c alone count for kind
    assert (a.sets, a.success_agree, a.kind_sets, a.kind_agree) == (4, 3, 2, 1)


@pytest.mark.slow  # scores the 95 images (about two minutes)
def test_the_judge_agrees_with_the_eye_on_the_held_out_half(evaluator):
    """The issue's goals on the held-out half: success or not on at least 90% (40 of 42 when written), the
    failure's kind on at least 85% (31 of 34)."""
    th = evaluator.thresholds()
    sets = panel.load()
    judged = {s.id: label_quality(evaluator.quality(x), th)[0] for s, x in panel.iter_samples(sets)}
    held = panel.agreement(sets, judged, "held_out")
    assert held.sets >= 40 and held.success_share >= 0.9, held
    assert held.kind_sets >= 30 and held.kind_share >= 0.85, held


def test_a_g_at_its_initial_weights_is_untrained_and_one_digit_repeated_is_collapse(evaluator, mnist):
    th = evaluator.thresholds()
    from gan_core.judge import constructed

    g0 = constructed.untrained_generator(mnist)(2000)
    label, why = label_quality(evaluator.quality(g0), th)
    assert label == "untrained" and "has not started" in why
    grey = torch.full((2000, 784), 0.5) + 0.01 * torch.randn(2000, 784, generator=torch.Generator().manual_seed(1))
    assert label_quality(evaluator.quality(grey), th)[0] == "untrained"
    one = Quality(**evaluator.calibration["repeat_1"])
    assert label_quality(one, th)[0] == "mode_collapse"


def test_off_data_counts_samples_far_in_pixels_from_every_real_digit(evaluator):
    real = Quality(**evaluator.calibration["real"])
    assert real.off_data <= 0.02
    for name in ("uniform_noise", "blobs", "lumps"):
        assert Quality(**evaluator.calibration[name]).off_data > 0.5, name
    third = Quality(**evaluator.calibration["mix_lumps_33"])
    assert 0.15 < third.off_data < 0.4  # about the third that is lumps


def test_texture_tells_strokes_from_speckle(evaluator, mnist):
    """The measures the untrained rule reads: real digits are strokes (joined bright pixels, smooth, mostly
    saturated ink); static is isolated speckle; a faint cloud is grey ink."""
    from gan_core.judge import metrics

    real = mnist.images[:500].float().div(255)
    connected, roughness, grey_ink = metrics.texture(real)
    assert connected > 0.8 and roughness < 0.5 and grey_ink < 0.5
    g = torch.Generator().manual_seed(3)
    salt = (torch.rand(500, 784, generator=g) < 0.15).float()  # isolated saturated dots
    connected, roughness, grey_ink = metrics.texture(salt)
    assert connected < 0.2 and roughness > 0.7 and grey_ink == 0
    cloud = 0.3 * torch.rand(500, 784, generator=g)
    assert metrics.texture(cloud)[2] > 0.95
    q = evaluator.quality(torch.cat([cloud[:1]] * 2000))  # one faint cloud for every z: G has not started
    label, why = label_quality(q, evaluator.thresholds())
    assert label == "untrained" and "faint cloud" in why, why
