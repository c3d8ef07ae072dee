"""What a user reads: progress lines in logs, a typed CLI, grid order, MLflow and Optuna names, the
evaluator trained once, and the report's fixes (each would fail on the output before them)."""

import math
import re

import optuna
import pandas as pd
import pytest
from conftest import add
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

from sweeps.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    storage, tracking = f"sqlite:///{tmp / 'o.db'}", f"sqlite:///{tmp / 'm.db'}"
    res = runner.invoke(app, ["run", "smoke", "--device", "cpu", "--storage", storage, "--tracking-uri", tracking,
                              "--out", str(tmp / "reports")])
    assert res.exit_code == 0, res.output
    return tmp, storage, tracking, res


def _data_source() -> str:
    from gan_core.data import load_dataset

    return load_dataset("mnist-10k").source


@pytest.mark.slow
def test_off_a_terminal_progress_is_plain_lines_per_trial_and_per_evaluated_epoch(smoke_run):
    _, _, _, res = smoke_run
    lines = res.stderr.splitlines()
    starts = [line for line in lines if re.match(r"trial #\d+ started \(lr_d=", line)]
    ends = [line for line in lines if re.match(r"trial #\d+ \w+, FLD [\d.]+ in \d+s \(lr_d=.*; \d+ done, \d+ left, ETA",
                                               line)]
    epochs = [line for line in lines if re.match(r"  #\d+ epoch \d/2: loss_d.*; study ETA (\d|finishing|-)", line)]
    assert len(starts) == 2 and len(ends) == 2 and len(epochs) == 4, res.stderr  # 2 trials x 2 evaluated epochs
    [opening] = [line for line in lines if line.startswith("study 'smoke")]  # one line, not wrapped at 80
    assert "(quick profile, 2 epochs per trial," in opening and opening.endswith(f"; data: {_data_source()}"), opening
    assert not any("\x1b[" in line or "━" in line for line in lines)  # no redrawn frames in a log


def test_the_study_eta_counts_epochs_so_a_population_ending_together_says_finishing():
    """Twelve trials of 36 epochs trained as one population; a resumed trial's restored epochs are not speed."""
    from sweeps.running import progress

    now = [0.0]
    clock = progress.StudyClock(planned=12, epochs=36, done=0, now=lambda: now[0])
    assert clock.eta() == "-"
    now[0] = 60.0
    for epoch in range(1, 10):
        for n in range(12):
            clock.epoch(n, epoch)  # a quarter of the design in a minute: three minutes left
    assert clock.eta() == "3m00s"
    now[0] = 240.0
    for epoch in range(10, 37):
        for n in range(12):
            clock.epoch(n, epoch)
    clock.ended(0, counted=True)
    assert clock.left() == 0 and clock.eta() == "finishing"  # the other eleven are trained out, not 2h away
    for n in range(1, 12):
        clock.ended(n, counted=True)
    assert clock.eta() == "-"

    stopping = progress.StudyClock(planned=3, epochs=36, done=0, now=lambda: 0.0)
    for epoch in range(1, 9):
        for n in range(3):
            stopping.epoch(n, epoch, final=epoch == 8 and n == 2)  # #2's fate sealed at 8: it stops there
    assert stopping.left() == 2 * 28  # its 28 unrun epochs are not work left
    for epoch in range(9, 37):
        for n in range(2):
            stopping.epoch(n, epoch, final=epoch == 36)
    assert stopping.eta() == "finishing"  # all three trained out, recorded together: not "ETA 4m"

    resumed = progress.StudyClock(planned=2, epochs=10, done=1, now=lambda: now[0])  # one done before this run
    now[0] = 250.0
    resumed.epoch(1, 6)  # restored at 5, trained its sixth in 10 s
    assert resumed.eta() == "40s"  # 4 epochs left at 10 s each, not 5 s each


def test_mlflow_names_say_what_ran_and_the_parent_carries_the_summary(smoke_run):
    tmp, storage, tracking, _ = smoke_run
    client = MlflowClient(tracking)
    exp = client.get_experiment_by_name("smoke-quick")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on the runs
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert re.fullmatch(r"smoke-quick run \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", parent.info.run_name)
    assert sorted(c.info.run_name for c in children) == ["lr_d=0.0001 s0", "lr_d=0.001 s0"]
    m = parent.data.metrics
    assert m["trials_finished"] == 2 and "wall_seconds" in m and "overhead_share" in m and "success_share" in m
    assert sum(v for k, v in m.items() if k.startswith("outcome_")) == 2
    arts = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.html", "report/trials.csv"} <= arts
    for c in children:
        assert c.data.params["device"] == "cpu" and "bundled" in c.data.params["data_source"]
        history = client.get_metric_history(c.info.run_id, "q_classes_covered_count")
        assert history and "step" not in c.data.metrics and "q_coverage" not in c.data.metrics


def test_optuna_names_the_objective(smoke_run):
    _, storage, _, _ = smoke_run
    assert optuna.load_study(study_name="smoke-quick", storage=storage).metric_names == ["fld"]


def test_the_first_trials_of_a_grid_cover_every_arm(tmp_path):
    from sweeps.stores.storage import StudyHandle, open_storage, plan
    from sweeps.study.spec import load_spec

    spec, prof = load_spec("clamp-study").for_profile("quick")
    storage = open_storage(f"sqlite:///{tmp_path / 'o.db'}", heartbeat=False)
    study = optuna.create_study(storage=storage, study_name="c")
    plan(StudyHandle(study, storage, spec, prof, "c"))
    queue = [t.system_attrs["fixed_params"] for t in sorted(study.get_trials(states=(TrialState.WAITING,)),
                                                             key=lambda t: t.number)]
    first = queue[:3]
    assert {p["clamp"] for p in first} == {"none", "clamp", "logits"}  # --trials 3 runs all three arms
    assert len({p["lr_d"] for p in queue[:4]}) == 2
    seeds = [t.user_attrs["seed"] for t in sorted(study.trials, key=lambda t: t.number)]
    assert seeds == sorted(seeds)  # every configuration's first seed before any second seed


def test_help_lists_choices_and_keeps_brackets(tmp_path, capsys):
    from conftest import assert_one_line_error, main_cli

    res = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    text = " ".join(res.stdout.split())
    assert "none|clamp|logits" in text and "requires_grad|eval_only" in text
    assert "D(x) in [eps, 1] on real data" in text  # rich markup no longer eats "[eps, 1]"
    assert "<int>" in text and "<float>" in text
    code, _, err = main_cli(["train", "--no-track", "--epochs", "two"], capsys)  # parsed by the CLI, as a number
    assert_one_line_error(err, code, "Invalid value for '--epochs'")


def _commands() -> list[list[str]]:
    import typer.main

    group = typer.main.get_command(app)
    return [[]] + [[name] for name in sorted(group.commands)]


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c) or "gan-sweep")
def test_every_help_ends_as_the_help_ends(command, capsys, monkeypatch):
    """The installed entry point masks what it prints: its --help must end exactly as typer's own (the box's
    last line and typer's closing newline), not with bytes printed as their repr (b''b'\\n')."""
    from conftest import main_cli

    from sweeps import entry

    monkeypatch.setenv("COLUMNS", "80")
    _, plain, _ = main_cli([*command, "--help"], capsys)  # typer alone, nothing masked
    with pytest.raises(SystemExit) as done:
        entry.main([*command, "--help"])
    masked = capsys.readouterr().out
    assert done.value.code in (0, None)
    assert masked == plain and "b'" not in masked
    assert masked.endswith("╯\n\n") and masked.count("\n╰") == masked.count("\n╭")


def test_version_and_python_m(tmp_path):
    import subprocess
    import sys

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.startswith("gan-sweep ")
    proc = subprocess.run([sys.executable, "-m", "sweeps", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == res.stdout


EVALUATOR_CHILD = """
import gan_core.judge.classifier as clf
from gan_core.data import Dataset, bundled_mnist
from gan_core.judge.evaluator import Evaluator
clf.CLF_EPOCHS = 1
m = bundled_mnist()
small = Dataset("other", "test", m.images[:3000], m.labels[:3000], m.clf_images[:2100], m.clf_labels[:2100],
                m.held_out_images[:2000], m.held_out_labels[:2000])
print("TRAINED" if Evaluator(small).trained_now else "LOADED")
"""


@pytest.mark.slow
def test_two_processes_asking_for_the_same_evaluator_train_it_once(tmp_path):
    import os
    import subprocess

    import forked

    env = os.environ | {"GAN_SWEEP_CACHE": str(tmp_path), "OMP_NUM_THREADS": "1"}
    procs = [forked.spawn("-c", EVALUATOR_CHILD, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    said = sorted(p.communicate(timeout=600)[0].strip() for p in procs)
    assert said == ["LOADED", "TRAINED"]  # one trained under the lock, the other waited and loaded it


# -- the report's fixes -----------------------------------------------------------------------------

def test_notes_are_a_list_in_html_not_a_literal_dash(study, tmp_path):
    from sweeps.report.data import load_study_data
    from sweeps.report.page import build, write

    study.enqueue_trial({"clamp": "none"}, user_attrs={"seed": 9})
    page = write(build(load_study_data(study), runs=None), tmp_path)["html"].read_text()
    assert "<li>Partial: " in page and "<p>- Partial" not in page


def test_best_and_worst_are_different_rows_and_best_never_produced_no_quality(study):
    from sweeps.report.data import load_study_data
    from sweeps.report.tables import best_worst

    data = load_study_data(study)  # logits 3/5 successes, clamp 1/5, none 0/5 (4 of them diverged)
    best, worst = best_worst(data, n=1)
    assert list(best["clamp"]) == ["logits"] and list(worst["clamp"]) == ["none"]
    best, worst = best_worst(data, n=2)
    assert list(best["clamp"]) == ["logits", "clamp"] and list(worst["clamp"]) == ["none"]
    best, worst = best_worst(data)  # three rows: all are best, none is left to be worst as well
    assert list(best["clamp"]) == ["logits", "clamp", "none"] and worst.empty
    assert best["fld_mean"].notna().all()


def test_captions_are_sentences_and_count_axes_are_whole_runs(study, tmp_path):
    from sweeps.report import figures as F
    from sweeps.report.data import load_study_data
    from sweeps.report.page import CAPTIONS, build, write

    data = load_study_data(study)
    rep = build(data, runs=None)
    page = write(rep, tmp_path)["html"].read_text()
    assert f"<figcaption>{CAPTIONS['outcome_counts']}</figcaption>" in page
    fig = F.outcome_counts(data, rep.outcome_tables)
    ax = fig.axes[0]
    assert all(float(t).is_integer() for t in ax.get_yticks())
    legend = [t.get_text() for t in fig.legends[0].get_texts()] if fig.legends else \
        [t.get_text() for a in fig.axes if a.get_legend() for t in a.get_legend().get_texts()]
    assert "d_overpowered" not in legend and "success" in legend  # only outcomes that occurred


def test_a_missing_effects_figure_is_explained(tmp_path):
    from sweeps.report.data import load_study_data
    from sweeps.report.page import build

    s = optuna.create_study()
    s.set_user_attr("spec", {"pitfall": 1, "metric": "fld", "fixed": {}, "baseline": {"clamp": "clamp"}})
    for i, clamp in enumerate(["none", "logits"]):
        add(s, i, clamp, i, "success", 100.0)
    rep = build(load_study_data(s), runs=None)
    assert "effects" not in rep.figures and any("No effects figure" in n for n in rep.notes)


def test_the_loss_figure_has_whole_epochs_and_y_labels(tiny_config, mnist):
    from gan_core.trainer import Trainer
    from sweeps.stores.artifacts import loss_figure

    fig = loss_figure(Trainer(tiny_config.replace(epochs=3), mnist).run().history)
    for ax in fig.axes:
        assert ax.get_ylabel() and all(float(t).is_integer() for t in ax.get_xticks())


@pytest.mark.parametrize("worst_loss,scale", [(1.5, "linear"), (4000.0, "symlog")])
def test_the_report_s_loss_panels_are_linear_unless_a_loss_runs_away(worst_loss, scale):
    """On a symlog axis small losses got a single tick or overlapping five-digit edge labels (seen in
    headless Chromium): linear unless a run's loss reaches the thousands, and readable ticks either way."""
    from sweeps.report.figures import curves_by_outcome

    h = pd.DataFrame({"loss_d": [1.3, 0.4, 0.09], "loss_g": [0.7, -0.84, 0.04], "d_real": [0.5, 0.6, 0.7],
                      "d_fake": [0.5, 0.4, 0.3]}, index=[1, 2, 3])
    h2 = h.assign(loss_d=[1.0, 2.0, worst_loss])
    fig = curves_by_outcome({"a": h, "b": h2}, {"a": "success", "b": "diverged"})
    fig.canvas.draw()
    loss_d, loss_g = fig.axes[:2]
    assert loss_d.get_yscale() == scale and loss_g.get_yscale() == "linear"
    for ax in (loss_d, loss_g):
        shown = [t for t in ax.get_yticklabels() if t.get_text() and ax.get_ylim()[0] <= t.get_position()[1] <= ax.get_ylim()[1]]
        assert len(shown) >= 3, [t.get_text() for t in shown]


def test_small_arms_get_welch_intervals_not_an_overconfident_bootstrap():
    from sweeps.report.stats import bootstrap_diff, mean_diff

    a, b = [1200.0, 1500.0, 900.0], [2300.0, 2100.0, 2450.0]
    d, lo, hi, method = mean_diff(a, b)
    _, blo, bhi = bootstrap_diff(a, b)
    assert method == "welch" and lo < blo and hi > bhi  # wider than the bootstrap's
    # by hand: Welch-Satterthwaite df and t_0.975
    from scipy import stats

    va, vb = pd.Series(a).var() / 3, pd.Series(b).var() / 3
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    assert hi - d == pytest.approx(stats.t.ppf(0.975, df) * math.sqrt(va + vb))
    assert mean_diff(list(range(20)), list(range(5, 25)))[3] == "bootstrap"


@pytest.mark.parametrize("scale", [1.0, 0.01, -99999.0, -1234.5, 1e7, -1e-7])
def test_the_loss_figure_s_fixed_margins_fit_extreme_values(scale):
    """Its panels' labels and ticks stay inside the figure and clear of each other and of the title,
    whatever the values: five-digit and scientific losses, NaN and infinity, gradients from 0 to 1e12."""
    import types

    import matplotlib.pyplot as plt
    import matplotlib.text

    from sweeps.stores.artifacts import loss_figure

    history = [types.SimpleNamespace(epoch=e, loss_d=scale * e, loss_g=float("nan") if e == 2 else -scale / e,
                                     d_real=1.0, d_fake=0.0, grad_d=10.0 ** (2 * e), grad_g=0.0 if e < 3 else math.inf)
               for e in range(1, 7)]
    fig = loss_figure(history, "mode_collapse (epoch 12)")
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    boxes = [ax.get_tightbbox(renderer) for ax in fig.axes]
    width, height = fig.bbox.width, fig.bbox.height
    for box in boxes:
        assert 0 <= box.x0 and box.x1 <= width and 0 <= box.y0 and box.y1 <= height, (box, width, height)
    for left, right in zip(boxes, boxes[1:]):
        assert left.x1 < right.x0, (left, right)
    title, = (t.get_window_extent(renderer) for t in fig.findobj(matplotlib.text.Text)
              if t.get_text() == "mode_collapse (epoch 12)")
    assert all(title.y0 > ax.get_window_extent(renderer).y1 for ax in fig.axes)
    plt.close(fig)
