"""Servers that go away mid-run (the MLflow tracking server killed, PostgreSQL stopped as in a crash): the
invocation ends in one line, without a traceback (or the database's password), and once the server is
back the same command finishes the study with nothing left RUNNING. Each test starts a private server on
loopback (the shared ones .ci/run starts must stay up) and, as a server test, is skipped where those are
not up."""

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import forked
import optuna
import pytest
from conftest import finish_here, needs_servers, study_file, watch_study
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState


def _until_training(storage: str, timeout_s: float = 120, proc: subprocess.Popen | None = None) -> None:
    """Wait until a trial of the scale-quick study is RUNNING (the study may not exist yet); a run that
    ends first fails the wait at once, with what it printed."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        time.sleep(0.5)
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the run ended (exit {proc.returncode}) before a trial trained: {(out + err)[-2000:]}")
        study = watch_study(storage, "scale-quick")
        if study and any(t.state == TrialState.RUNNING for t in study.trials):
            return
    raise AssertionError("no trial started training")


def _mlflow_server(folder: Path, port: int, timeout_s: float = 240) -> subprocess.Popen:
    """A private MLflow server on loopback, its output in folder/server-N.log; a server that exits or
    stays unreachable fails the wait with that log's tail (under the whole suite it can take a minute)."""
    import urllib.request

    log = folder / f"server-{len(list(folder.glob('server-*.log')))}.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(["mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                                 "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
                                 "--artifacts-destination", str(folder / "artifacts")],
                                cwd=folder, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                                env=os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})  # as .ci/servers.sh
    deadline = time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return proc
        except OSError:
            time.sleep(0.2)  # a refused connection costs nothing: ask often, start the test once it answers
    state = f"exited {proc.returncode}" if proc.poll() is not None else f"unreachable after {timeout_s:.0f} s"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"mlflow server {state}: {log.read_text()[-2000:]}")


@needs_servers
@pytest.mark.slow
def test_a_tracking_server_killed_mid_trial_ends_in_one_line_and_the_next_run_closes_its_runs(tmp_path, capsys,
                                                                                                  monkeypatch):
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    port = 55601
    server = _mlflow_server(server_dir, port)
    uri = f"http://127.0.0.1:{port}"
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    args = ["run", str(study_file(tmp_path, lrs=2, seeds=1, epochs=8, steps=4)),
            "--device", "cpu", "--engine", "reference", "--storage", storage, "--tracking-uri", uri,
            "--out", str(tmp_path / "r"), "--checkpoint-dir", str(tmp_path / "ckpt"), "--heartbeat", "1"]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = forked.spawn("-m", "sweeps", *args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True)
    try:  # the run can take minutes to start beside the whole suite and two servers
        _until_training(storage, timeout_s=400, proc=proc)
        time.sleep(2)  # into the first of two trials of 8 epochs (each a few seconds)
    finally:  # never leave this server behind: a later run of the test would find it on its port
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in out + err, err[-3000:]
    assert len([x for x in err.splitlines() if x.startswith("error:")]) == 1, err[-3000:]
    server = _mlflow_server(server_dir, port)  # the server is back; the same command resumes
    try:
        monkeypatch.chdir(tmp_path)
        finish_here(capsys, *args)  # the next run, in this process (the kill needed one; this does not)
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("scale-quick")
        assert not client.search_runs([exp.experiment_id], filter_string="attributes.status = 'RUNNING'")
        study = optuna.load_study(study_name="scale-quick", storage=storage)
        assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    finally:
        os.killpg(server.pid, signal.SIGKILL)


def _postgres(port: int):
    """A private PostgreSQL on loopback (the shared one must stay up for the other tests); returns its
    data folder and a function that runs pg_ctl with the given arguments."""
    import shutil
    import tempfile

    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    data = Path(tempfile.mkdtemp(prefix="gan-sweep-pg-"))  # outside pytest's 0700 folder: the server's user reads it
    as_pg = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    if os.getuid() == 0:
        shutil.chown(data, "postgres")

    def pg_ctl(*args: str, check: bool = True) -> None:
        subprocess.run([*as_pg, str(bins[-1] / "pg_ctl"), "-D", str(data), "-l", str(data / "log"), "-w", *args],
                       check=check, capture_output=True, timeout=60)

    subprocess.run([*as_pg, str(bins[-1] / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True, timeout=120)
    return data, pg_ctl


@needs_servers
@pytest.mark.slow
def test_a_postgresql_stopped_mid_trial_ends_in_one_line_and_the_rerun_finishes(tmp_path, capsys, monkeypatch):
    import shutil

    port = 55633
    data, pg_ctl = _postgres(port)
    start = ("-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start")
    pg_ctl(*start)
    storage = f"postgresql://postgres:Pg-Secret-3@127.0.0.1:{port}/postgres"  # trust: the password is ignored
    args = ["run", str(study_file(tmp_path, lrs=2, seeds=1, epochs=8, steps=4)),
            "--device", "cpu", "--engine", "reference", "--storage", storage,
            "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", "--out", str(tmp_path / "r"),
            "--checkpoint-dir", str(tmp_path / "ckpt"), "--heartbeat", "1"]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    try:
        proc = forked.spawn("-m", "sweeps", *args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
        _until_training(storage)
        time.sleep(2)
        pg_ctl("-m", "immediate", "stop")  # as a crash: open connections are cut
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, err[-3000:]
        assert "Traceback" not in out + err and "Pg-Secret-3" not in out + err, err[-3000:]
        assert len([x for x in err.splitlines() if x.startswith("error:")]) == 1, err[-3000:]
        pg_ctl(*start)  # the database is back: the same command resumes and finishes
        monkeypatch.chdir(tmp_path)
        finish_here(capsys, *args)  # the rerun, in this process
        study = optuna.load_study(study_name="scale-quick", storage=storage)
        done = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len({t.params["lr_d"] for t in done}) == 2
        assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
        exp = client.get_experiment_by_name("scale-quick")
        assert not client.search_runs([exp.experiment_id], filter_string="attributes.status = 'RUNNING'")
    finally:
        pg_ctl("-m", "immediate", "stop", check=False)
        shutil.rmtree(data, ignore_errors=True)


def _freeze(pid: int, sig: int) -> None:
    """SIGSTOP or SIGCONT a server and every process it started (PostgreSQL's backends, MLflow's workers)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for p in [pid, *map(int, children)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, sig)


FROZEN_TIMEOUT_S = 10
"""The stated time these tests give (GAN_SWEEP_STORE_TIMEOUT): a call unanswered this long ends the run."""


def _ends_within_the_stated_time(proc: subprocess.Popen, heartbeat_s: float) -> str:
    """The run ends in one line and exit 1 within the stated time of its next store call (a heartbeat at
    the latest), plus the watchdog's second and room for a loaded machine; its stderr."""
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=120)
    waited = time.monotonic() - t0
    assert proc.returncode == 1, err[-3000:]
    errors = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "has not answered for" in errors[0], err[-3000:]
    assert "Traceback" not in out + err, err[-3000:]
    assert waited <= FROZEN_TIMEOUT_S + heartbeat_s + 1 + 8, f"ended {waited:.1f} s after the freeze"
    return err


@needs_servers
@pytest.mark.slow
def test_a_frozen_postgresql_ends_the_run_in_one_line_within_the_stated_time_and_the_rerun_finishes(
        tmp_path, capsys, monkeypatch):
    import shutil

    port = 55634
    data, pg_ctl = _postgres(port)
    start = ("-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start")
    pg_ctl(*start)
    storage = f"postgresql://postgres:Pg-Secret-4@127.0.0.1:{port}/postgres"
    args = ["run", str(study_file(tmp_path, lrs=2, seeds=1, epochs=8, steps=4)),
            "--device", "cpu", "--engine", "reference", "--storage", storage,
            "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", "--out", str(tmp_path / "r"),
            "--checkpoint-dir", str(tmp_path / "ckpt"), "--heartbeat", "1"]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "GAN_SWEEP_STORE_TIMEOUT": str(FROZEN_TIMEOUT_S)}
    postmaster = None
    proc = forked.spawn("-m", "sweeps", *args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True)
    try:
        _until_training(storage, timeout_s=400, proc=proc)
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        _freeze(postmaster, signal.SIGSTOP)  # the server stops answering; its connections stay open
        err = _ends_within_the_stated_time(proc, heartbeat_s=1)
        assert "Pg-Secret-4" not in err
        _freeze(postmaster, signal.SIGCONT)
        monkeypatch.chdir(tmp_path)
        finish_here(capsys, *args)  # the rerun closes what the frozen one left and finishes
        study = optuna.load_study(study_name="scale-quick", storage=storage)
        done = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len({t.params["lr_d"] for t in done}) == 2
        assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
        exp = client.get_experiment_by_name("scale-quick")
        assert not client.search_runs([exp.experiment_id], filter_string="attributes.status = 'RUNNING'")
    finally:
        if proc.poll() is None:  # a run that hung is not left behind
            proc.kill()
        if postmaster is not None:
            _freeze(postmaster, signal.SIGCONT)
        pg_ctl("-m", "immediate", "stop", check=False)
        shutil.rmtree(data, ignore_errors=True)


@needs_servers
@pytest.mark.slow
def test_a_frozen_tracking_server_ends_the_run_in_one_line_within_the_stated_time_and_the_rerun_finishes(
        tmp_path, capsys, monkeypatch):
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    port = 55602
    server = _mlflow_server(server_dir, port)
    uri = f"http://127.0.0.1:{port}"
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    args = ["run", str(study_file(tmp_path, lrs=2, seeds=1, epochs=8, steps=4)),
            "--device", "cpu", "--engine", "reference", "--storage", storage, "--tracking-uri", uri,
            "--out", str(tmp_path / "r"), "--checkpoint-dir", str(tmp_path / "ckpt"), "--heartbeat", "1"]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "GAN_SWEEP_STORE_TIMEOUT": str(FROZEN_TIMEOUT_S)}
    proc = forked.spawn("-m", "sweeps", *args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True)
    try:
        _until_training(storage, timeout_s=400, proc=proc)
        os.killpg(server.pid, signal.SIGSTOP)  # every process of the server stops; its socket stays open
        _ends_within_the_stated_time(proc, heartbeat_s=1)
        os.killpg(server.pid, signal.SIGCONT)
        monkeypatch.chdir(tmp_path)
        finish_here(capsys, *args)
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("scale-quick")
        assert not client.search_runs([exp.experiment_id], filter_string="attributes.status = 'RUNNING'")
        study = optuna.load_study(study_name="scale-quick", storage=storage)
        assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGCONT)
            os.killpg(server.pid, signal.SIGKILL)


ROUND_TRIP_CHILD = """
import sys, sqlalchemy
from sweeps.stores import deadline
url, what = sys.argv[1], sys.argv[2]
deadline.install_sql(url)
engine = sqlalchemy.create_engine(url, connect_args=deadline.connect_args(url))
conn = engine.connect()
conn.execute(sqlalchemy.text("SELECT 1"))  # answered: a transaction is open, no statement in flight
print("ready", flush=True)
sys.stdin.readline()  # the server is frozen now
conn.commit() if what == "commit" else conn.close()  # close: the pool resets the connection (ROLLBACK)
print("returned", flush=True)
"""


@needs_servers
@pytest.mark.slow
@pytest.mark.parametrize("what", ["commit", "reset"])
def test_a_commit_or_a_pool_reset_to_a_frozen_server_ends_within_the_stated_time(tmp_path, what):
    """COMMIT and the pool's ROLLBACK wait for the server outside any statement: timed all the same (a run
    once hung for good when PostgreSQL froze during the COMMIT that followed a trial's claim)."""
    import shutil
    import sys

    port = 55635
    data, pg_ctl = _postgres(port)
    pg_ctl("-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start")
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    proc = subprocess.Popen([sys.executable, "-c", ROUND_TRIP_CHILD, url, what], cwd=Path(__file__).parents[1],
                            env=os.environ | {"GAN_SWEEP_STORE_TIMEOUT": "5"}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()[-2000:]
        _freeze(postmaster, signal.SIGSTOP)
        t0 = time.monotonic()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
        waited = time.monotonic() - t0
        assert proc.returncode == 1 and "returned" not in out, (out, err[-2000:])
        assert err.startswith("error: the Optuna store") and "has not answered for" in err, err[-2000:]
        assert waited <= 5 + 1 + 8, f"ended {waited:.1f} s after the freeze"
    finally:
        if proc.poll() is None:
            proc.kill()
        _freeze(postmaster, signal.SIGCONT)
        pg_ctl("-m", "immediate", "stop", check=False)
        shutil.rmtree(data, ignore_errors=True)
