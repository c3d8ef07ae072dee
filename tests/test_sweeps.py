"""`gan-sweep run`: Optuna storage, resume, MLflow tracking, interrupts, bad study files."""


import optuna
import pytest
from conftest import assert_one_line_error
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

from gan_core.judge.labels import LABELS
from gan_core.records import TRIAL_REDUCTIONS
from sweeps.cli import app

runner = CliRunner()
OUTCOMES = set(LABELS)


def stores(tmp_path):
    return f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"


def run(tmp_path, *extra, study="smoke"):
    storage, tracking = stores(tmp_path)
    return runner.invoke(app, ["run", study, "--device", "cpu", "--storage", storage, "--tracking-uri", tracking,
                               "--out", str(tmp_path / "reports"), *extra])


@pytest.fixture
def finished(tmp_path, evaluator):
    result = run(tmp_path)
    assert result.exit_code == 0, result.output
    return tmp_path


@pytest.mark.slow
def test_every_trial_is_in_optuna_with_its_state_and_attributes(finished):
    storage, _ = stores(finished)
    study = optuna.load_study(study_name="smoke-quick", storage=storage)
    trials = study.get_trials()
    assert len(trials) == 2
    from sweeps.report.data import load_study_data

    assert set(TRIAL_REDUCTIONS) <= set(load_study_data(study).trials.columns)  # the report's columns too
    assert sorted(t.params["lr_d"] for t in trials) == [1e-4, 1e-3]
    for t in trials:
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert t.user_attrs["outcome"] in OUTCOMES
        assert t.user_attrs["outcome_epoch"] >= 1 and t.user_attrs["evidence"]
        assert t.user_attrs["seed"] == 0 and len(t.user_attrs["mlflow_run_id"]) == 32
        assert t.user_attrs["git_commit"]
        assert set(TRIAL_REDUCTIONS) <= set(t.user_attrs)  # every probe the catalogue sends to a trial
        # every trial is checked whatever its outcome: complete ones carry the objective, sealed ones none
        if t.state == TrialState.COMPLETE:
            assert t.value == pytest.approx(t.user_attrs["final_fld"]) and not t.user_attrs["sealed"]
        else:
            assert t.value is None and t.user_attrs["sealed"]
        # quality reported every epoch trained, as long as the run produced samples to measure
        epochs = list(range(1, t.user_attrs["epochs_trained"] + 1))
        assert sorted(t.intermediate_values) == (epochs if t.user_attrs["outcome"] != "diverged" else epochs[:-1])


@pytest.mark.slow
def test_mlflow_has_one_parent_and_one_child_per_trial(finished):
    storage, tracking = stores(finished)
    client = MlflowClient(tracking)
    exp = client.get_experiment_by_name("smoke-quick")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2
    trials = {t.user_attrs["mlflow_run_id"]: t for t in optuna.load_study(study_name="smoke-quick", storage=storage).trials}
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        trial = trials[child.info.run_id]
        assert child.data.tags["outcome"] == trial.user_attrs["outcome"]
        assert child.data.tags["optuna_trial"] == str(trial.number)
        assert float(child.data.params["lr_d"]) == trial.params["lr_d"]
        assert child.data.params["clamp"] == "clamp" and child.data.params["dataset"] == "mnist-10k"
        history = client.get_metric_history(child.info.run_id, "loss_d")
        assert [m.step for m in history] == list(range(1, trial.user_attrs["epochs_trained"] + 1))
        assert [m.step for m in client.get_metric_history(child.info.run_id, "q_fld")] == [1, 2][:len(history)]
        names = [a.path for a in client.list_artifacts(child.info.run_id)]
        assert "loss_curves.png" in names
        images = [a.path for a in client.list_artifacts(child.info.run_id, "images")]
        assert any(p.endswith(".png") and "samples" in p for p in images), images
        assert child.info.status == "FINISHED"


@pytest.mark.slow
def test_the_report_carries_an_audit_sheet_of_every_trial_and_the_typical_grid_per_label(finished):
    folder = finished / "reports" / "smoke-quick"
    assert (folder / "figures" / "audit_sheet.png").is_file() and (folder / "figures" / "samples.png").is_file()
    page = (folder / "report.html").read_text()
    assert '<img alt="Every trial&#x27;s final samples with the judge&#x27;s label' in page
    assert "MLflow data unavailable" not in page


@pytest.mark.slow
def test_rerunning_a_finished_study_adds_no_trials(finished):
    result = run(finished)
    assert result.exit_code == 0, result.output
    storage, _ = stores(finished)
    assert len(optuna.load_study(study_name="smoke-quick", storage=storage).trials) == 2


@pytest.mark.slow
def test_an_interrupted_run_is_closed_and_a_rerun_completes_exactly_the_missing_trials(tmp_path, evaluator, monkeypatch):
    import gan_core.trainer

    real_run = gan_core.trainer.Trainer.run
    calls = {"n": 0}

    def interrupt_second(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(gan_core.trainer.Trainer, "run", interrupt_second)
    first = run(tmp_path, "--engine", "reference")  # one trial at a time: the second is interrupted
    assert first.exit_code == 130
    storage, tracking = stores(tmp_path)
    study = optuna.load_study(study_name="smoke-quick", storage=storage)
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE", "FAIL"] or states == ["FAIL", "PRUNED"]
    failed = next(t for t in study.trials if t.state == TrialState.FAIL)
    assert failed.user_attrs["fail_reason"] == "interrupted"
    client = MlflowClient(tracking)
    killed = client.get_run(failed.user_attrs["mlflow_run_id"])
    assert killed.info.status == "KILLED"  # not left RUNNING
    assert all(r.info.status != "RUNNING" for r in client.search_runs(
        [client.get_experiment_by_name("smoke-quick").experiment_id]))

    monkeypatch.setattr(gan_core.trainer.Trainer, "run", real_run)
    second = run(tmp_path, "--engine", "reference")
    assert second.exit_code == 0, second.output
    study = optuna.load_study(study_name="smoke-quick", storage=storage)
    done = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(study.trials) == 3  # the two configurations, plus the one interrupted attempt
    assert sorted(t.params["lr_d"] for t in done) == [1e-4, 1e-3]  # each exactly once
    assert failed.params["lr_d"] in [t.params["lr_d"] for t in done]


GOOD = """
name = "x"
seeds = [0]
[sampler]
kind = "grid"
[space]
lr_d = { values = [1e-4, 1e-3] }
[profiles.quick]
epochs = 1
"""


@pytest.mark.parametrize("text, message", [
    (GOOD.replace('name = "x"', 'name = "x"\ncolour = "red"'), "unknown key colour"),
    (GOOD.replace("[1e-4, 1e-3]", "[]"), "space.lr_d.values is empty"),
    (GOOD.replace("values = [1e-4, 1e-3]", "log_uniform = [1e-2, 1e-6]"), "empty range"),
    (GOOD + "[fixed]\nlr_d = 1e-4\n", "lr_d is both fixed and swept"),
    (GOOD.replace("seeds = [0]", 'seeds = "zero"'), "seeds must be a non-empty list of integers"),
    (GOOD.replace("epochs = 1", 'epochs = "one"'), "profiles.quick.epochs must be an integer"),
    (GOOD.replace("[1e-4, 1e-3]", "[-1.0]"), "space.lr_d: lr_d must be > 0, got -1.0"),
    (GOOD.replace("lr_d = {", "warp = {"), "space.warp: unknown run-config key 'warp'"),
    (GOOD.replace('kind = "grid"', 'kind = "bayes"'), "sampler.kind must be one of grid, tpe, random"),
    (GOOD.replace("[1e-4, 1e-3]", "[1e-4, 1e-4]"), "space.lr_d.values has duplicates"),
    (GOOD.replace("epochs = 1", ""), "profiles.quick.epochs is missing"),
    (GOOD + "[fixed]\nclamp = 3\n", "fixed.clamp: clamp must be one of none, clamp, logits, got 3"),
    (GOOD.replace("[sampler]", "[sampler\n"), "not valid TOML"),
    (GOOD.replace('kind = "grid"', 'kind = "tpe"'), "profiles.quick.trials is needed by the tpe sampler"),
])
def test_bad_study_files_are_one_line_errors_with_exit_2_and_nothing_written(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = run(tmp_path, study=str(path))
    assert_one_line_error(result.stderr, result.exit_code, message)
    assert str(path) in result.stderr
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("args, message", [
    (["no-such-study"], "unknown study 'no-such-study'"),
    (["smoke", "--profile", "huge"], "--profile must be one of quick, full"),
    (["smoke", "--seeds", "a,b"], "--seeds must be comma-separated integers"),
    (["smoke", "--dataset", "cifar"], "unknown dataset 'cifar'"),
    (["smoke", "--device", "cuda"], "no CUDA GPU is available here"),
    (["smoke", "--epochs", "0"], "--epochs must be > 0"),
])
def test_bad_run_arguments_are_one_line_errors(tmp_path, args, message):
    storage, tracking = stores(tmp_path)
    result = runner.invoke(app, ["run", *args, "--storage", storage, "--tracking-uri", tracking])
    assert_one_line_error(result.stderr, result.exit_code, message)
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_a_study_reopened_with_another_space_is_refused(tmp_path, evaluator):
    path = tmp_path / "s.toml"
    path.write_text(GOOD.replace("epochs = 1", "epochs = 1\nsteps_per_epoch = 2\neval_samples = 100")
                    + '[fixed]\ndataset = "mnist-10k"\n')
    assert run(tmp_path, "--study-name", "same", study=str(path)).exit_code == 0
    path.write_text(path.read_text().replace("[1e-4, 1e-3]", "[1e-4, 1e-2]"))
    result = run(tmp_path, "--study-name", "same", study=str(path))
    assert result.exit_code == 2 and "different search space" in result.stderr


def test_builtin_studies_all_load_and_list(tmp_path):
    result = runner.invoke(app, ["studies"])
    assert result.exit_code == 0
    for name in ("lr-study", "clamp-study", "clip-study", "freeze-study", "schedule-study", "g-loss-study",
                 "ablation", "smoke"):
        assert name in result.stdout
        shown = runner.invoke(app, ["show", name])
        assert shown.exit_code == 0 and "profile quick" in shown.stdout, shown.output


@pytest.mark.slow
def test_the_population_engine_runs_a_study_with_the_same_records(tmp_path, evaluator):
    result = run(tmp_path, "--engine", "population")
    assert result.exit_code == 0, result.output
    storage, tracking = stores(tmp_path)
    trials = optuna.load_study(study_name="smoke-quick", storage=storage).trials
    assert len(trials) == 2 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    client = MlflowClient(tracking)
    for t in trials:
        run_ = client.get_run(t.user_attrs["mlflow_run_id"])
        assert run_.info.status == "FINISHED" and run_.data.tags["outcome"] == t.user_attrs["outcome"]
        assert len(client.get_metric_history(run_.info.run_id, "loss_d")) == t.user_attrs["epochs_trained"]
    # the same trials on the reference engine: the same outcomes and (float32, same device) nearly the same FLD
    ref = tmp_path / "ref"
    ref.mkdir()
    assert run(ref).exit_code == 0
    ref_trials = optuna.load_study(study_name="smoke-quick", storage=stores(ref)[0]).trials
    for a, b in zip(sorted(trials, key=lambda t: t.params["lr_d"]), sorted(ref_trials, key=lambda t: t.params["lr_d"])):
        assert a.user_attrs["outcome"] == b.user_attrs["outcome"]
        assert a.user_attrs["final_fld"] == pytest.approx(b.user_attrs["final_fld"], rel=0.05)
