"""Ctrl-C, SIGTERM and kill -9: an interrupt ends the invocation in one line with exit 130 (even while it
starts, inside a commit, or where a finalizer swallowed it), every trial and MLflow run it held is closed,
and what a killed invocation left RUNNING is closed by the next one."""

import signal
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import cli, ended, gan_sweep, stores, study_file
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState


def _mlflow_runs(tracking: str, experiment: str):
    client = MlflowClient(tracking)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def _wait_for_training(tracking: str, proc, timeout=120):
    """Until the run's first child run exists. The store is read only once the run has made it (it appears
    whole, copied under the run's lock): a client opening a missing file would make one itself, racing the run."""
    db = Path(tracking.removeprefix("sqlite:///"))
    t0 = time.time()
    while time.time() - t0 < timeout:
        if db.exists() and any("mlflow.parentRunId" in r.data.tags for r in _mlflow_runs(tracking, "scale-quick")):
            return
        assert proc.poll() is None, proc.communicate()[0][-2000:]
        time.sleep(0.3)
    raise AssertionError("training never started")


def test_ctrl_c_while_starting_is_one_line_and_exit_130(tmp_path):
    proc = gan_sweep("run", study_file(tmp_path, lrs=1, seeds=1), "--storage", stores(tmp_path)[0],
                     "--tracking-uri", stores(tmp_path)[1], cwd=tmp_path, fresh=True)  # its start-up is the point
    time.sleep(2.0)  # past the interpreter's own start-up, still importing torch, optuna or mlflow
    proc.send_signal(signal.SIGINT)
    out = ended(proc, 120)
    assert proc.returncode == 130, out
    assert "Traceback" not in out and len(out.strip().splitlines()) <= 2, out


@pytest.mark.slow
@pytest.mark.parametrize("how", ["two_sigint", "sigterm"])
def test_an_interrupt_ends_every_mlflow_run(tmp_path, how):
    storage, tracking = stores(tmp_path)
    proc = gan_sweep("run", study_file(tmp_path, lrs=2, seeds=1, epochs=30, steps=30), "--storage", storage,
                     "--tracking-uri", tracking, "--device", "cpu", cwd=tmp_path)
    _wait_for_training(tracking, proc)
    if how == "two_sigint":
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    out = ended(proc, 120)
    assert proc.returncode == 130, out[-2000:]
    statuses = {r.info.run_name: r.info.status for r in _mlflow_runs(tracking, "scale-quick")}
    assert "RUNNING" not in statuses.values(), statuses


def test_an_interrupt_between_two_trials_set_up_still_ends_both_runs(tmp_path, monkeypatch):
    """The window CI's load once hit: the signal lands after a population's second child run exists
    but before its trial holds it; the invocation's end closes what its trials could not."""
    from sweeps.stores.tracking import Tracker

    storage, tracking = stores(tmp_path)
    real, opened = Tracker.start_run, []

    def start_run(self, name, tags=None, parent=None, params=None):
        run_id = real(self, name, tags=tags, parent=parent, params=params)
        if parent is not None:
            opened.append(run_id)
            if len(opened) == 2:
                raise KeyboardInterrupt
        return run_id

    monkeypatch.setattr(Tracker, "start_run", start_run)
    res = cli("run", study_file(tmp_path, lrs=2, seeds=1, epochs=2, steps=5), "--storage", storage,
              "--tracking-uri", tracking, "--device", "cpu", "--engine", "population", "--out", tmp_path / "r")
    assert res.exit_code == 130 and len(opened) == 2, res.output
    statuses = {r.info.run_id: r.info.status for r in _mlflow_runs(tracking, "scale-quick")}
    assert len(statuses) == 3 and set(statuses.values()) == {"KILLED"}, statuses


def test_an_interrupt_a_finalizer_swallowed_still_stops_the_run(tmp_path, monkeypatch):
    """Python raises a Ctrl-C's KeyboardInterrupt wherever the main thread is, and inside a finalizer
    (SQLAlchemy's, for one) it is printed and dropped: the signal, noted by the handler,
    must still stop the run at its next epoch, with every trial and run closed."""
    from sweeps import signals
    from sweeps.stores.tracking import Tracker

    storage, tracking = stores(tmp_path)
    real = Tracker.start_run

    def start_run(self, name, tags=None, parent=None, params=None):
        if parent is not None:
            signals.note(signal.SIGINT)  # noted; its exception "lost" (never raised)
        return real(self, name, tags=tags, parent=parent, params=params)

    monkeypatch.setattr(Tracker, "start_run", start_run)
    res = cli("run", study_file(tmp_path, lrs=2, seeds=1, epochs=30, steps=5), "--storage", storage,
              "--tracking-uri", tracking, "--device", "cpu", "--engine", "population", "--out", tmp_path / "r")
    assert res.exit_code == 130, res.output
    assert not signals.received()  # acted on once
    statuses = {r.info.run_id: r.info.status for r in _mlflow_runs(tracking, "scale-quick")}
    assert len(statuses) == 3 and set(statuses.values()) == {"KILLED"}, statuses
    trials = optuna.load_study(study_name="scale-quick", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2
    assert all(t.intermediate_values.keys() <= {0} for t in trials)  # stopped at the first epoch, not the 30th


def test_a_swallowed_interrupt_is_said_in_one_line_and_other_unraisables_as_python_says_them(capsys, monkeypatch):
    from sweeps.entry import _unraisable

    class Finalizer:
        def __init__(self, exc):
            self.exc = exc

        def __del__(self):
            raise self.exc

    monkeypatch.setattr(sys, "unraisablehook", _unraisable)
    Finalizer(KeyboardInterrupt())  # dropped at once: its __del__ raises, and Python cannot propagate it
    assert capsys.readouterr().err == "interrupt received: stopping at the end of the epoch in hand\n"
    Finalizer(ValueError("x"))
    err = capsys.readouterr().err
    assert "Exception ignored" in err and "ValueError: x" in err


@pytest.mark.parametrize("store", ["mlflow", "optuna"])
def test_an_interrupt_inside_a_commit_does_not_lock_the_process_out_of_its_own_store(tmp_path, monkeypatch, store):
    """A Ctrl-C that lands inside a sqlite commit leaves that connection holding the write lock: the
    cleanup's own writes then waited on "database is locked" (CI: children left RUNNING, a hang)."""
    import optuna.trial
    import sqlalchemy.engine.base

    from sweeps.stores.tracking import Tracker

    storage, tracking = stores(tmp_path)
    armed, commit = [], sqlalchemy.engine.base.Connection._commit_impl

    def boom(self, *a, **k):
        if armed == [True]:
            armed.append(False)
            raise KeyboardInterrupt
        return commit(self, *a, **k)

    def arming(real):
        def call(self, *a, **k):
            armed.append(True) if not armed else None
            return real(self, *a, **k)
        return call

    monkeypatch.setattr(sqlalchemy.engine.base.Connection, "_commit_impl", boom)
    if store == "mlflow":
        monkeypatch.setattr(Tracker, "log_epoch", arming(Tracker.log_epoch))
    else:
        monkeypatch.setattr(optuna.trial.Trial, "report", arming(optuna.trial.Trial.report))
    t0 = time.time()
    res = cli("run", study_file(tmp_path, lrs=2, seeds=1, epochs=5, steps=5), "--storage", storage,
              "--tracking-uri", tracking, "--device", "cpu", "--engine", "population", "--out", tmp_path / "r")
    assert res.exit_code == 130 and armed == [True, False], res.output
    assert time.time() - t0 < 60, "the cleanup waited on its own lock"
    statuses = {r.info.run_id: r.info.status for r in _mlflow_runs(tracking, "scale-quick")}
    assert len(statuses) == 3 and set(statuses.values()) == {"KILLED"}, statuses
    trials = optuna.load_study(study_name="scale-quick", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2


@pytest.mark.slow
def test_a_killed_invocation_s_parent_run_is_closed_by_the_next_one(tmp_path):
    storage, tracking = stores(tmp_path)
    spec = study_file(tmp_path, lrs=2, seeds=1, epochs=30, steps=30)
    proc = gan_sweep("run", spec, "--storage", storage, "--tracking-uri", tracking, "--device", "cpu",
                     "--heartbeat", "1", cwd=tmp_path)
    _wait_for_training(tracking, proc)
    proc.kill()
    proc.communicate(timeout=60)
    time.sleep(4)  # three missed beats
    again = gan_sweep("run", spec, "--storage", storage, "--tracking-uri", tracking, "--device", "cpu",
                      "--heartbeat", "1", cwd=tmp_path)
    t0 = time.time()
    while time.time() - t0 < 120:
        parents = [r for r in _mlflow_runs(tracking, "scale-quick") if "mlflow.parentRunId" not in r.data.tags]
        first = min(parents, key=lambda r: r.info.start_time)
        if first.info.status != "RUNNING":
            break
        time.sleep(0.5)
    again.kill()
    again.communicate(timeout=60)
    assert first.info.status == "KILLED" and "heartbeat" in first.data.tags.get("fail_reason", "")
