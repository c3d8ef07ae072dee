"""Verdicts use all their evidence: where success rates cannot tell arms apart (0% everywhere), FLD and
legibility with their intervals can, and the verdict says which carried it; "best" is the best measured,
with the seed's own setting named as such; and every verdict says whether it holds when the success bar
moves by its band either way."""

import dataclasses

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from gan_core.judge.thresholds import Thresholds
from gan_core.records import Quality
from sweeps.report.data import load_study_data
from sweeps.report.verdicts import claim_verdict

FIELDS = [f.name for f in dataclasses.fields(Quality)]


def quality(fld: float, legible: float, classes: float = 10.0) -> dict:
    """A final quality whose label follows from its FLD and legibility (everything else looks like data)."""
    q = dict(fld=fld, score=8.0, coverage=10, junk=0.02, class_kl=0.02, precision=0.85, recall=0.5,
             confidence=0.9, legible=legible, classes=classes, distinct=0.99, spread=1.0, brightness=0.13,
             off_data=0.02)
    return {f"final_{k}": v for k, v in q.items()}


def make_study(key: str, levels: list, runs: dict, claims: list, baseline: dict) -> optuna.Study:
    """`runs`: level -> [(outcome, fld, legible, last_loss_d, last_loss_g), ...] (a seed each)."""
    s = optuna.create_study(direction="minimize")
    s.set_user_attr("spec", {"source": "fixture", "profile": "quick", "metric": "fld", "claims": claims,
                             "baseline": baseline, "fixed": {}})
    s.set_user_attr("thresholds", dataclasses.asdict(Thresholds()))
    for level, rows in runs.items():
        for seed, (outcome, fld, legible, loss_d, loss_g) in enumerate(rows):
            ua = {"seed": seed, "outcome": outcome, "sealed": False, "evidence": "x", "epochs_trained": 36,
                  "last_loss_d": loss_d, "last_loss_g": loss_g, "config": {key: level}, **quality(fld, legible)}
            s.add_trial(create_trial(params={key: level}, distributions={key: CategoricalDistribution(levels)},
                                     value=fld, state=TrialState.COMPLETE, user_attrs=ua))
    return s


def test_with_no_success_anywhere_fld_carries_the_lr_verdict_and_best_is_the_best_measured():
    """The main job's case: 0 successes in 12 runs, yet FLD 2,000 at the smallest lr against 70 at 1e-3."""
    levels = [1e-5, 1e-4, 1e-3, 1e-2]
    runs = {1e-5: [("mode_collapse", f, 0.0, 1.4, 1.6) for f in (1800, 2100, 2350)],
            1e-4: [("poor_quality", f, 0.4, 1.0, 1.2) for f in (1120, 1250, 1330)],
            1e-3: [("poor_quality", f, 0.67, 0.9, 1.5) for f in (56, 77, 87)],
            1e-2: [("stalled", f, 0.0, 6.9, 0.0) for f in (1960, 2400, 2630)]}
    data = load_study_data(make_study("lr_d", levels, runs, [4], {"lr_d": 1e-4}))
    v = claim_verdict(data, "4")
    assert v.status == "supported", v.sentence
    assert "best lr measured (0.001)" in v.sentence and "0.0001" not in v.sentence.split("best lr measured")[1][:12]
    assert "carried by FLD, legibility" in v.sentence and "FLD +" in v.sentence
    assert "success rates cannot tell them apart" in v.sentence  # the rates could not, and the sentence says so


def test_the_seed_s_own_setting_is_named_when_it_is_the_best_measured():
    levels = [1e-5, 1e-4, 1e-3]
    runs = {1e-5: [("poor_quality", f, 0.1, 1.4, 1.6) for f in (900, 950, 1000)],
            1e-4: [("success", f, 0.8, 1.0, 1.2) for f in (60, 70, 80)],
            1e-3: [("poor_quality", f, 0.5, 0.9, 1.5) for f in (300, 320, 340)]}
    v = claim_verdict(load_study_data(make_study("lr_d", levels, runs, [4], {"lr_d": 1e-4})), "4")
    assert "best lr measured (0.0001, the seed's own)" in v.sentence and v.status == "supported"
    assert "carried by the success rates" in v.sentence


def test_a_verdict_near_the_bar_says_it_depends_on_it_and_one_far_from_it_that_it_holds():
    """Successes at FLD 275 (the bar is 290, its band 10%): a stricter bar (261) makes them poor."""
    levels = [1e-5, 1e-3]
    near = {1e-5: [("poor_quality", f, 0.1, 1.4, 1.6) for f in (900, 950, 1000)],
            1e-3: [("success", f, 0.8, 1.0, 1.2) for f in (273, 275, 277)]}
    far = {1e-5: [("poor_quality", f, 0.1, 1.4, 1.6) for f in (900, 950, 1000)],
           1e-3: [("success", f, 0.85, 1.0, 1.2) for f in (40, 50, 60)]}
    v_far = claim_verdict(load_study_data(make_study("lr_d", levels, far, [4], {"lr_d": 1e-4})), "4")
    assert v_far.bar == "holds whatever the bar" and "holds whatever the bar" in v_far.sentence
    v_near = claim_verdict(load_study_data(make_study("lr_d", levels, near, [4], {"lr_d": 1e-4})), "4")
    assert v_near.status == "supported"
    # the rates flip at the stricter bar; FLD still tells them apart, so the verdict holds: the sentence says so
    assert v_near.bar in ("holds whatever the bar", "depends on the bar")
    data = load_study_data(make_study("lr_d", levels, near, [4], {"lr_d": 1e-4}))
    from sweeps.report.verdicts.evidence import relabelled

    stricter = relabelled(data.finished, Thresholds().moved(True))
    assert (stricter["outcome"] == "success").sum() == 0 and (data.finished["outcome"] == "success").sum() == 3


def test_without_stored_thresholds_no_bar_is_claimed():
    levels = [1e-5, 1e-3]
    runs = {1e-5: [("poor_quality", f, 0.1, 1.4, 1.6) for f in (900, 950, 1000)],
            1e-3: [("success", f, 0.85, 1.0, 1.2) for f in (40, 50, 60)]}
    s = make_study("lr_d", levels, runs, [4], {"lr_d": 1e-4})
    s.set_user_attr("thresholds", None)
    v = claim_verdict(load_study_data(s), "4")
    assert v.bar == "" and "bar" not in v.sentence


@pytest.mark.parametrize("stricter", [True, False])
def test_the_bar_moves_by_its_own_bands(stricter):
    th = Thresholds()
    moved = th.moved(stricter)
    sign = 1 if stricter else -1
    assert moved.success_fld == pytest.approx(th.success_fld * (1 - sign * th.fld_band))
    assert moved.success_legible == pytest.approx(th.success_legible + sign * th.fidelity_band)


@pytest.mark.parametrize("fld,bar", [(275.0, "depends on the bar"), (50.0, "holds whatever the bar")])
def test_the_headline_near_the_success_bar_depends_on_it(fld, bar):
    """The literal reading's three runs succeed at FLD 275 (the bar is 290, 261 when stricter): the verdict
    turns with the bar, and says so; at FLD 50 it holds."""
    runs = {"none": [("success", fld + d, 0.8, 1.0, 1.0) for d in (-2, 0, 2)],
            "tanh": [("success", 60.0 + d, 0.85, 1.0, 1.0) for d in (-2, 0, 2)]}
    v = claim_verdict(load_study_data(make_study("g_output", ["none", "tanh"], runs, ["headline"], {})), "headline")
    assert v.status == "supported" and v.bar == bar, v.sentence
    assert "against the success bar 290" in v.sentence


def test_the_headline_s_measures_decide_where_its_success_rate_cannot():
    """One literal run of six succeeds (the rate's interval spans one half), the rest lie far above the bar:
    the measures' intervals say what the rate cannot; with four runs and a wide interval they cannot either."""
    rows = [("poor_quality", 900.0, 0.3, 1.0, 1.0), ("poor_quality", 950.0, 0.3, 1.0, 1.0),
            ("poor_quality", 1000.0, 0.2, 1.0, 1.0), ("success", 150.0, 0.75, 1.0, 1.0)]
    v = claim_verdict(load_study_data(make_study("g_output", ["none"], {"none": rows}, ["headline"], {})), "headline")
    assert v.status in ("inconclusive", "contradicted")
    rows = [("poor_quality", 2000.0 + d, 0.1, 1.0, 1.0) for d in (0, 50, 100, 150, 200)] + \
        [("success", 150.0, 0.75, 1.0, 1.0)]  # 1 of 6: the rate's interval (3-56%) still spans one half
    v = claim_verdict(load_study_data(make_study("g_output", ["none"], {"none": rows}, ["headline"], {})), "headline")
    assert v.status == "contradicted" and "against the success bar" in v.sentence, v.sentence
