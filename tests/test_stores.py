"""The Optuna and MLflow stores: a refused command leaves both untouched (a broken, foreign, read-only,
deleted or swapped store is refused before the other store is created or changed), readers never alter
a store, concurrent processes claim and sample each trial exactly once, and a study keeps its own
heartbeat and direction."""

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import forked
import optuna
import pytest
from conftest import assert_one_line_error, cli, stores, study_file
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState


def test_a_trial_enqueued_by_another_process_is_claimed_and_runs(tmp_path):
    from sweeps.stores.storage import StudyHandle, open_storage, pop_waiting
    from sweeps.study.spec import load_spec

    url = f"sqlite:///{tmp_path / 'o.db'}"
    spec, prof = load_spec(str(study_file(tmp_path, lrs=2, seeds=1))).for_profile("quick")
    a = optuna.create_study(storage=open_storage(url, heartbeat=False), study_name="s")
    storage_b = open_storage(url, heartbeat=False)
    b = optuna.load_study(study_name="s", storage=storage_b)
    b.get_trials()  # b's cache is filled before a enqueues
    a.enqueue_trial({"lr_d": 1e-4}, user_attrs={"seed": 0})
    trial = pop_waiting(StudyHandle(b, storage_b, spec, prof, "s", url))
    assert trial is not None
    assert spec.space[0].suggest(trial) == 1e-4  # KeyError here before the fix
    b.tell(trial, 1.0)
    assert a.trials[0].state == TrialState.COMPLETE


def _random_study(tmp_path, trials=3, seeds=2) -> Path:
    path = tmp_path / "rnd.toml"
    path.write_text(f"""
name = "rnd"
seeds = {list(range(seeds))}
[sampler]
kind = "random"
seed = 7
[space]
lr_d = {{ log_uniform = [1e-5, 1e-3] }}
[fixed]
dataset = "mnist-10k"
[profiles.quick]
epochs = 1
steps_per_epoch = 2
eval_samples = 64
trials = {trials}
""")
    return path


def test_two_processes_asking_at_once_sample_exactly_the_design(tmp_path):
    """Two handles on one study (as two processes hold them), seeded alike, ask in threads at once."""
    from sweeps.stores.storage import (
        StudyHandle,
        ask_sampled,
        make_sampler,
        open_storage,
        pop_waiting,
        trial_key,
    )
    from sweeps.study.spec import load_spec

    url = f"sqlite:///{tmp_path / 'o.db'}"
    spec, prof = load_spec(str(_random_study(tmp_path, trials=5))).for_profile("quick")
    optuna.create_study(storage=open_storage(url, heartbeat=False), study_name="s")
    handles = []
    for _ in range(2):
        storage = open_storage(url, heartbeat=False)
        study = optuna.load_study(study_name="s", storage=storage, sampler=make_sampler(spec))
        handles.append(StudyHandle(study, storage, spec, prof, "s", url))
    asked: list[list] = [[], []]
    barrier = threading.Barrier(2)

    def ask(i):  # as a worker takes work: an enqueued trial first, else a newly sampled one
        barrier.wait()
        while (t := pop_waiting(handles[i]) or ask_sampled(handles[i])) is not None:
            asked[i].append(t.number)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    trials = optuna.load_study(study_name="s", storage=url).trials
    sampled = [t for t in trials if t.user_attrs.get("sampled")]
    assert len(sampled) == 5, [len(a) for a in asked]  # not 6 or 7: the count and the ask are one step
    assert all(t.params for t in sampled)  # every configuration exists before the lock is let go
    keys = [trial_key(t) for t in trials]  # an enqueued trial's parameters are fixed, not yet suggested
    assert len(trials) == 10 and len(set(keys)) == 10, keys  # each one's seed 1 enqueued once, not twice


def test_one_process_samples_the_same_sequence_every_time(tmp_path):
    from sweeps.stores.storage import (
        StudyHandle,
        ask_sampled,
        make_sampler,
        open_storage,
        pop_waiting,
    )
    from sweeps.study.spec import load_spec

    spec, prof = load_spec(str(_random_study(tmp_path, trials=4))).for_profile("quick")
    drawn = []
    for run in range(2):
        url = f"sqlite:///{tmp_path / f'o{run}.db'}"
        storage = open_storage(url, heartbeat=False)
        study = optuna.create_study(storage=storage, study_name="s", sampler=make_sampler(spec))
        h = StudyHandle(study, storage, spec, prof, "s", url)
        for _ in iter(lambda: pop_waiting(h) or ask_sampled(h), None):
            pass
        drawn.append([t.params["lr_d"] for t in study.get_trials() if t.user_attrs.get("sampled")])
    assert drawn[0] == drawn[1] and len(drawn[0]) == 4


@pytest.mark.slow
def test_two_concurrent_runs_of_a_random_study_run_the_design_exactly_once(tmp_path, evaluator):
    """Two real processes on one store. The race itself is pinned deterministically by the threaded test
    above (both handles ask behind one barrier); this one shows the same holds through the entry point."""
    spec = _random_study(tmp_path, trials=3, seeds=2)
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    args = ["run", str(spec), "--device", "cpu", "--engine", "reference",
            "--storage", f"sqlite:///{tmp_path / 'o.db'}", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
            "--out", str(tmp_path / "reports"), "--checkpoint-dir", str(tmp_path / "ckpt")]
    procs = [forked.spawn("-m", "sweeps", *args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    trials = optuna.load_study(study_name="rnd-quick", storage=f"sqlite:///{tmp_path / 'o.db'}").trials
    keys = [(t.params["lr_d"], t.user_attrs["seed"]) for t in trials]
    assert len(trials) == 6 and len(set(keys)) == 6, keys


def test_a_worker_uses_the_study_s_heartbeat_not_its_own(tmp_path):
    from sweeps.running.plan import RunOptions, resolve
    from sweeps.stores.storage import StaleTrials, open_study_for

    storage, tracking = stores(tmp_path)
    spec = study_file(tmp_path, lrs=1, seeds=1)
    first = RunOptions(str(spec), storage=storage, tracking_uri=tracking, device="cpu", heartbeat=20)
    handle, added = open_study_for(resolve(first), first, True, StaleTrials())
    assert added == 1 and handle.heartbeat_s == 20
    second = RunOptions(str(spec), storage=storage, tracking_uri=tracking, device="cpu", heartbeat=1)
    handle, _ = open_study_for(resolve(second), second, False, StaleTrials())
    assert handle.heartbeat_s == 20 and handle.storage.get_heartbeat_interval() == 20


@pytest.mark.slow
def test_a_study_reopened_with_another_direction_is_refused(tmp_path):
    storage, tracking = stores(tmp_path)
    spec = study_file(tmp_path, lrs=1, seeds=1)
    assert cli("run", spec, "--device", "cpu", "--storage", storage, "--tracking-uri", tracking, "--trials", "0"
               ).exit_code == 2  # --trials 0 is refused: nothing created yet
    res = cli("run", spec, "--device", "cpu", "--storage", storage, "--tracking-uri", tracking, "--out",
              tmp_path / "r")
    assert res.exit_code == 0, res.output
    spec.write_text(spec.read_text().replace('name = "scale"', 'name = "scale"\nobjective = { metric = "fld", '
                                                                 'direction = "maximize" }'))
    res = cli("run", spec, "--device", "cpu", "--storage", storage, "--tracking-uri", tracking)
    assert_one_line_error(res.stderr, res.exit_code, "different search space, budget, objective or data layout")


def test_a_same_named_study_not_made_by_gan_sweep_is_refused(tmp_path):
    storage, tracking = stores(tmp_path)
    optuna.create_study(storage=storage, study_name="scale-quick", direction="maximize")
    spec = study_file(tmp_path, lrs=1, seeds=1)
    res = cli("run", spec, "--device", "cpu", "--storage", storage, "--tracking-uri", tracking)
    assert_one_line_error(res.stderr, res.exit_code, "was not made by gan-sweep")
    assert not (tmp_path / "m.db").exists()


def test_a_foreign_study_with_a_malformed_spec_is_one_line(tmp_path):
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(storage=storage, study_name="foreign")
    study.set_user_attr("spec", "not a table")
    res = cli("report", "foreign", "--storage", storage, "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
              "--out", tmp_path / "r")
    assert_one_line_error(res.stderr, res.exit_code, "was not made by gan-sweep")
    assert not (tmp_path / "m.db").exists()


def test_report_of_a_mistyped_sqlite_store_creates_no_file(tmp_path):
    res = cli("report", "smoke", "--storage", f"sqlite:///{tmp_path / 'typo.db'}", "--out", tmp_path / "r")
    assert_one_line_error(res.stderr, res.exit_code, "no gan-sweep storage at")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow  # a whole run before the refusal: kept out of the quick tier
def test_swapped_store_urls_are_refused_and_leave_both_files_alone(tmp_path, evaluator):
    storage, tracking = stores(tmp_path)
    spec = study_file(tmp_path, lrs=1, seeds=1)
    assert cli("run", spec, "--device", "cpu", "--storage", storage, "--tracking-uri", tracking,
               "--out", tmp_path / "reports").exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "o.db", tmp_path / "m.db")}
    res = cli("run", spec, "--device", "cpu", "--storage", tracking, "--tracking-uri", storage)
    assert_one_line_error(res.stderr, res.exit_code, "swapped")
    assert {p: p.stat().st_mtime_ns for p in before} == before
    res = cli("run", spec, "--device", "cpu", "--storage", storage, "--tracking-uri", storage)
    assert_one_line_error(res.stderr, res.exit_code, "name the same file")


@pytest.mark.parametrize("content,message", [
    (b"this is not a database, just bytes" * 100, "cannot be used"),
    (b"SQLite format 3\x00" + b"\x00" * 84, "cannot be used"),   # a header and nothing else
])
def test_a_broken_tracking_file_is_refused_and_the_optuna_store_is_not_created(tmp_path, content, message):
    (tmp_path / "m.db").write_bytes(content)
    storage, tracking = stores(tmp_path)
    res = cli("run", study_file(tmp_path, lrs=1, seeds=1), "--device", "cpu", "--storage", storage,
              "--tracking-uri", tracking, "--out", tmp_path / "r")
    assert_one_line_error(res.stderr, res.exit_code, message)
    assert not (tmp_path / "o.db").exists() and (tmp_path / "m.db").read_bytes() == content


def test_a_database_that_is_not_mlflow_s_is_refused_as_tracking_store(tmp_path):
    con = sqlite3.connect(tmp_path / "m.db")
    con.execute("CREATE TABLE notes (x)")
    con.commit()
    con.close()
    storage, tracking = stores(tmp_path)
    res = cli("run", study_file(tmp_path, lrs=1, seeds=1), "--device", "cpu", "--storage", storage,
              "--tracking-uri", tracking)
    assert_one_line_error(res.stderr, res.exit_code, "not MLflow's")
    assert not (tmp_path / "o.db").exists()


@pytest.mark.slow  # a real process without root's capability, twice: kept out of the quick tier
@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_truly_read_only_tracking_store_is_refused_before_the_optuna_store_exists(tmp_path, what):
    """Permission bits say yes to root, so the command runs without the capability that overrides them
    (`setpriv`): a read-only mlflow.db, or a writable one in a folder where sqlite cannot make its journal."""
    import shutil

    if os.getuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("root without setpriv: the permission bits cannot be made to hold")
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()  # a real MLflow database
    (db.chmod if what == "file" else folder.chmod)(0o444 if what == "file" else 0o555)
    drop = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"] if os.getuid() == 0 else []
    before = db.stat().st_mtime_ns
    try:
        proc = subprocess.run([*drop, sys.executable, "-m", "sweeps", "run", str(study_file(tmp_path, lrs=1, seeds=1)),
                               "--device", "cpu", "--storage", f"sqlite:///{tmp_path / 'o.db'}",
                               "--tracking-uri", f"sqlite:///{db}", "--out", str(tmp_path / "r")],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env=os.environ | {"OMP_NUM_THREADS": "1"})
    finally:
        folder.chmod(0o755)
    assert_one_line_error(proc.stderr, proc.returncode, "cannot be used" if what == "file" else "no file can be created")
    assert not (tmp_path / "o.db").exists() and not (tmp_path / "r").exists()
    assert db.stat().st_mtime_ns == before and sorted(p.name for p in folder.iterdir()) == ["mlflow.db"]


def test_a_deleted_experiment_is_refused_before_the_optuna_store_exists(tmp_path):
    storage, tracking = stores(tmp_path)
    client = MlflowClient(tracking)
    client.delete_experiment(client.create_experiment("scale-quick"))
    before = (tmp_path / "m.db").stat().st_mtime_ns
    res = cli("run", study_file(tmp_path, lrs=1, seeds=1), "--device", "cpu", "--storage", storage,
              "--tracking-uri", tracking)
    assert_one_line_error(res.stderr, res.exit_code, "is deleted")
    assert not (tmp_path / "o.db").exists() and (tmp_path / "m.db").stat().st_mtime_ns == before


def _mtimes(folder: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in (folder / "o.db", folder / "m.db")}


@pytest.mark.parametrize("command", ["report", "atlas"])
def test_readers_refuse_the_optuna_store_as_tracking_store_and_touch_neither(finished_study, tmp_path, command):
    storage, _ = stores(finished_study)
    before = _mtimes(finished_study)
    args = ["scale-quick"] if command == "report" else ["--claims", "1"]
    res = cli(command, *args, "--storage", storage, "--tracking-uri", storage, "--out", tmp_path / "out")
    assert_one_line_error(res.stderr, res.exit_code, "name the same file")
    res = cli(command, *args, "--storage", storage, "--tracking-uri", f"sqlite:///{tmp_path / 'other.db'}",
              "--out", tmp_path / "out")  # a mistyped tracking store: read as absent, not created
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "other.db").exists()
    assert _mtimes(finished_study) == before


def test_ending_an_mlflow_run_retries_a_store_locked_for_a_moment(monkeypatch):
    """An interrupt's cleanup met `database is locked` on a loaded machine and left the parent RUNNING."""
    from mlflow.exceptions import MlflowException

    from sweeps.stores.tracking import Tracker

    calls = []

    class Client:
        def set_tag(self, run_id, key, value):
            pass

        def set_terminated(self, run_id, status):
            calls.append(status)
            if len(calls) < 3:
                raise MlflowException("(sqlite3.OperationalError) database is locked")

    tracker = Tracker.__new__(Tracker)
    tracker.client = Client()
    monkeypatch.setattr("sweeps.stores.tracking.time.sleep", lambda s: None)
    tracker.end("run", "KILLED", fail_reason="interrupted")
    assert calls == ["KILLED"] * 3
    calls.clear()
    tracker.client.set_terminated = lambda run_id, status: (_ for _ in ()).throw(MlflowException("no such run"))
    with pytest.raises(MlflowException, match="no such run"):  # a real error is not retried
        tracker.end("run", "KILLED")


def test_postgresql_limits_never_override_what_the_url_sets():
    """A schema chosen with `options` and a connect timeout in the URL are the user's; gan-sweep adds only
    what is missing (and no server-side statement timeout, which PgBouncer refuses at connection)."""
    from sweeps.stores.deadline import connect_args

    mine = connect_args("postgresql://u@h/db?options=-csearch_path%3Dmine&connect_timeout=3")
    assert "options" not in mine and "connect_timeout" not in mine
    assert mine["keepalives"] == 1 and mine["tcp_user_timeout"] == 60_000
    assert connect_args("postgresql://u@h/db")["connect_timeout"] == 10
    assert connect_args("sqlite:///x.db") == {}


def test_a_sampler_s_heaviest_corner_is_checked_for_memory(tmp_path, monkeypatch):
    """Each value alone fits, the corner a random sampler can draw (the widest G scored on the most samples)
    does not."""
    from gan_core import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 16 << 30)
    path = tmp_path / "corner.toml"
    path.write_text('name = "corner"\nseeds = [0]\n[sampler]\nkind = "random"\nseed = 1\n[space]\n'
                    'g_hidden = { values = ["256,512", "16384,16384"] }\neval_samples = { values = [2000, 20000] }\n'
                    '[fixed]\ndataset = "mnist-10k"\n[profiles.quick]\nepochs = 1\nsteps_per_epoch = 2\ntrials = 1\n')
    storage, tracking = stores(tmp_path)
    res = cli("run", path, "--device", "cpu", "--storage", storage, "--tracking-uri", tracking, "--out",
              tmp_path / "r", "--checkpoint-dir", tmp_path / "c")
    assert_one_line_error(res.stderr, res.exit_code, "GiB of memory")
    assert not (tmp_path / "o.db").exists()
