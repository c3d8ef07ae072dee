"""Reports on a study fixture with known outcomes (`study`, in conftest): exact counts, rates, intervals and
verdicts."""

import base64
import math
import re

import optuna
import pandas as pd
import pytest
from conftest import add
from optuna.trial import TrialState

from sweeps.report.data import load_study_data
from sweeps.report.page import build, write
from sweeps.report.stats import newcombe, seeds_needed, welch_diff, wilson
from sweeps.report.tables import config_table, effect_table, outcome_table


def test_outcome_table_has_the_exact_counts_rates_and_wilson_intervals(study):
    t = outcome_table(load_study_data(study), "clamp").set_index("clamp")
    assert list(t.index) == ["none", "clamp", "logits"]
    assert t.loc["none", ["runs", "diverged", "poor_quality", "success"]].tolist() == [5, 4, 1, 0]
    assert t.loc["logits", ["runs", "success", "mode_collapse", "poor_quality", "FAIL"]].tolist() == [5, 3, 1, 1, 1]
    assert t.loc["clamp", ["stalled", "mode_collapse", "success"]].tolist() == [2, 2, 1]  # a failure of its own
    assert t.loc["logits", "success_rate"] == pytest.approx(0.6)
    # Wilson 95% for 3/5, by hand: centre (0.6 + 1.96^2/10) / (1 + 1.96^2/5), half-width as in the formula
    z = 1.959963984540054
    centre = (0.6 + z * z / 10) / (1 + z * z / 5)
    half = z * math.sqrt(0.6 * 0.4 / 5 + z * z / 100) / (1 + z * z / 5)
    assert t.loc["logits", "ci_low"] == pytest.approx(centre - half) == pytest.approx(0.2307, abs=1e-4)
    assert t.loc["logits", "ci_high"] == pytest.approx(centre + half) == pytest.approx(0.8824, abs=1e-4)
    assert t.loc["none", ["ci_low", "ci_high"]].tolist() == pytest.approx([0.0, 0.4345], abs=1e-4)


def test_wilson_and_newcombe_match_published_values():
    # Newcombe (1998), table II, example (a): 56/70 vs 48/80 -> 0.2, 95% CI 0.0524 to 0.3339
    d, lo, hi = newcombe(56, 70, 48, 80)
    assert (d, round(lo, 4), round(hi, 4)) == (pytest.approx(0.2), 0.0524, 0.3339)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    # (1.96 + 0.8416)^2 * (0.09 + 0.09) / 0.8^2 = 2.21 -> 3 runs per arm
    assert seeds_needed(0.5, 0.5) is None and seeds_needed(0.9, 0.1) == 3


def test_config_table_gives_quality_mean_and_spread_over_seeds(study):
    t = config_table(load_study_data(study)).set_index("clamp")
    assert t.loc["logits", "seeds"] == 5 and t.loc["logits", "success"] == "3/5"
    assert t.loc["logits", "fld_mean"] == pytest.approx((80 + 90 + 120 + 1000 + 700) / 5)
    assert t.loc["clamp", "fld_std"] == pytest.approx(pd.Series([100.0, 2000, 2100, 1200, 1300]).std())
    assert t.index[0] == "logits"  # best first (lowest mean FLD); none has NaNs from diverged runs


def test_effects_against_the_baseline_use_newcombe_and_a_bootstrap(study):
    t = effect_table(load_study_data(study)).set_index("level")
    assert set(t.index) == {"none", "logits"} and (t["baseline"] == "clamp").all()
    d, lo, hi = newcombe(3, 5, 1, 5)
    assert t.loc["logits", ["success_diff", "success_ci_low", "success_ci_high"]].tolist() == pytest.approx([d, lo, hi])
    assert t.loc["logits", "fld_diff"] == pytest.approx((80 + 90 + 120 + 1000 + 700) / 5 - (100 + 2000 + 2100 + 1200 + 1300) / 5)
    assert t.loc["logits", "fld_ci_low"] < t.loc["logits", "fld_diff"] < t.loc["logits", "fld_ci_high"]


def test_the_clamp_verdict_is_a_sentence_with_its_numbers(study):
    rep = build(load_study_data(study), runs=None)
    v, = rep.verdicts
    assert v.claim_id == "1" and v.status == "supported"
    assert "Without clamping, 4 of 5 runs diverged" in v.sentence
    assert "with the seed's clamp, 0 of 5 runs diverged" in v.sentence
    assert "2 of 5 runs stalled" in v.sentence
    assert any("1 trial(s) failed" in n for n in rep.notes)  # crashes are counted, not dropped


def test_verdict_asks_for_more_seeds_when_the_data_cannot_tell():
    s = optuna.create_study()
    s.set_user_attr("spec", {"pitfall": 1, "metric": "fld", "fixed": {}})
    for i, (clamp, outcome) in enumerate([("none", "diverged"), ("none", "success"), ("none", "success"),
                                          ("clamp", "success"), ("clamp", "success"), ("clamp", "success")]):
        add(s, i, clamp, i, outcome, 100.0)
    v, = build(load_study_data(s), runs=None).verdicts
    assert v.status == "inconclusive" and re.search(r"about \d+ more seeds per arm", v.sentence)


def test_the_samples_figure_shows_the_typical_run_of_each_label_not_the_best(study):
    from sweeps.report.page import typical_trials

    picks = typical_trials(load_study_data(study))
    assert set(picks) == {"diverged", "stalled", "mode_collapse", "poor_quality", "success"}
    assert picks["success"]["final_fld"] == 90.0  # successes at 80, 90, 100, 120: the median, not the best
    assert picks["stalled"]["final_fld"] == 2000.0


def test_report_files_csv_round_trips_markdown_has_tables_html_is_self_contained(study, tmp_path):
    rep = build(load_study_data(study), runs=None)
    files = write(rep, tmp_path)
    back = pd.read_csv(files["csv"])
    assert len(back) == 16 and back["trial"].tolist() == list(range(16))
    assert back["outcome"].value_counts().to_dict() == load_study_data(study).trials["outcome"].value_counts().to_dict()
    md = files["md"].read_text()
    assert "| clamp " in md and ("|:-" in md or "|--" in md)  # a Markdown table with its rule line
    assert "## Verdict on the seed's pitfall 1: supported" in md
    page = files["html"].read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) >= 3 and all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in images)
    assert "src=\"http" not in page and "<link" not in page  # nothing fetched: opens offline
    # read as a person would (seen in headless Chromium at 800 px): a wide table scrolls in its own box
    # instead of the whole page, images are described by their captions, the page knows a phone's width
    assert page.count("<table") == page.count("<div class='scroll'><table") > 0
    assert all(" " in alt for alt in re.findall(r'<img alt="([^"]*)"', page))
    assert "name='viewport'" in page
    # three configurations, all shown as best: the worst section says so, not "no finished runs yet"
    assert "Every configuration is already listed under Best configurations." in page + md
    assert "no finished runs yet" not in page + md
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    assert {f.stat().st_mode & 0o777 for f in [*files.values(), *tmp_path.glob("figures/*")]} == {0o666 & ~mask}


@pytest.mark.parametrize("trials", [1, 3])
def test_the_samples_and_audit_figures_titles_fit_their_figure(study, trials):
    """One or three tiles made a figure narrower than its one-line title, cut at both ends."""
    import numpy as np

    from sweeps.report.page import audit_sheet, samples_figure, typical_trials

    data = load_study_data(study)
    grids = {int(row["trial"]): np.zeros((30, 30)) for row in list(typical_trials(data).values())[:trials]}
    for fig in (samples_figure(data, grids), audit_sheet(data, grids)):
        fig.canvas.draw()
        title, = [t for t in fig.texts if t.get_text() == fig.get_suptitle()]
        box = title.get_window_extent()
        assert 0 <= box.x0 and box.x1 <= fig.bbox.width, (trials, box, fig.bbox.width)


def test_a_partial_study_says_so(study):
    study.enqueue_trial({"clamp": "none"}, user_attrs={"seed": 9})
    rep = build(load_study_data(study), runs=None)
    assert any(n.startswith("Partial: 15 of 17 trials finished") for n in rep.notes)


def test_a_study_whose_every_trial_crashed_still_reports(tmp_path):
    s = optuna.create_study()
    s.set_user_attr("spec", {"pitfall": 1, "metric": "fld", "fixed": {}})
    for i in range(3):
        add(s, i, "none", i, None, None, state=TrialState.FAIL)
    rep = build(load_study_data(s), runs=None)
    files = write(rep, tmp_path)
    assert outcome_table(rep.data, "clamp")["FAIL"].tolist() == [3]
    assert any("3 trial(s) failed" in n for n in rep.notes)
    assert rep.verdicts[0].status == "not tested" and files["html"].is_file()


def test_welch_s_interval_uses_t_s_quantile_at_the_welch_satterthwaite_df():
    from scipy import stats

    a, b = [0.9, 0.7, 0.8], [0.2, 0.5, 0.1, 0.3]
    va, vb = stats.tvar(a) / 3, stats.tvar(b) / 4
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    d, lo, hi = welch_diff(a, b)
    assert d == pytest.approx(0.8 - 0.275) and (lo, hi) == pytest.approx((d - half, d + half), rel=1e-12)
    assert math.isnan(welch_diff([1.0], b)[1])
