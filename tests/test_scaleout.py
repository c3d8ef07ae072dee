"""Scale-out and reliability: PostgreSQL workers, a worker killed mid-trial, signals, a race of two
workers on fresh databases. The server tests need the PostgreSQL and `mlflow server` that
`.ci/run` starts (`source .ci/servers.sh start` does it by hand); without them they are skipped,
saying why. Everything listens on loopback only."""

import signal
import subprocess
import time
import uuid

import optuna
import pytest
from conftest import (
    MLFLOW,
    PG,
    assert_one_line_error,
    ended,
    finish_here,
    gan_sweep,
    needs_servers,
    study_file,
    watch_study,
)
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def fresh_pg_database() -> str:
    """A new empty database on the test server (fresh schema for every test)."""
    import sqlalchemy

    name = f"t_{uuid.uuid4().hex[:10]}"
    engine = sqlalchemy.create_engine(PG, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return PG.rsplit("/", 1)[0] + "/" + name


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out = ended(proc, timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def exactly_once(study: optuna.Study) -> list:
    done = [t for t in study.trials if t.state in DONE]
    keys = [(t.params["lr_d"], t.user_attrs["seed"]) for t in done]
    why = [(t.number, t.state.name, t.params, t.user_attrs.get("fail_reason")) for t in study.trials]
    assert len(keys) == len(set(keys)), f"a configuration ran twice: {why}"
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)], why
    assert not [t for t in study.trials if t.state == TrialState.FAIL and t.user_attrs.get("error")], why
    return keys


@needs_servers
def test_four_workers_run_twenty_trials_each_exactly_once(tmp_path, evaluator, capsys):
    storage = fresh_pg_database()
    spec = study_file(tmp_path, lrs=5, seeds=4)
    common = ["--storage", storage, "--tracking-uri", MLFLOW, "--study-name", f"four-{uuid.uuid4().hex[:6]}",
              "--device", "cpu", "--checkpoint-dir", tmp_path / "ckpt"]
    finish_here(capsys, "run", spec, "--trials", 1, *common, "--out", tmp_path / "r")  # creates and enqueues
    workers = [gan_sweep("worker", spec, *common) for _ in range(4)]
    for w in workers:
        finish(w)
    study = optuna.load_study(study_name=common[5], storage=storage)
    keys = exactly_once(study)
    assert len(keys) == 20 and len(study.trials) == 20  # none lost, none duplicated, none failed
    client = MlflowClient(MLFLOW)
    runs = client.search_runs([client.get_experiment_by_name(common[5]).experiment_id], max_results=200)
    assert sum("mlflow.parentRunId" in r.data.tags for r in runs) == 20
    assert all(r.info.status == "FINISHED" for r in runs)


@needs_servers
def test_workers_on_postgresql_prune_through_their_trials_and_run_each_configuration_once(tmp_path, evaluator, capsys):
    """A pruned study across processes: the run that creates it trains one trial, two workers the rest; each
    process's pruner decides through its trials and the shared store (successive halving, asynchronous)."""
    storage = fresh_pg_database()
    spec = study_file(tmp_path, lrs=1, seeds=1, epochs=3, steps=4)
    spec.write_text(spec.read_text().replace("lr_d = { values = [0.0001] }",  # falling lrs: later ones do worse early
                                             "lr_d = { values = [3e-3, 2e-3, 1e-3, 5e-4, 2e-4, 1e-4] }")
                    .replace("[space]", '[pruner]\nkind = "successive_halving"\nmin_resource = 1\nreduction_factor = 2\n'
                                        "[space]"))
    name = f"prune-{uuid.uuid4().hex[:6]}"
    common = ["--storage", storage, "--tracking-uri", MLFLOW, "--study-name", name, "--device", "cpu",
              "--checkpoint-dir", tmp_path / "ckpt", "--population-size", 3]
    finish_here(capsys, "run", spec, "--trials", 1, *common, "--out", tmp_path / "r")  # creates and enqueues
    for w in [gan_sweep("worker", spec, *common) for _ in range(2)]:
        finish(w)
    study = optuna.load_study(study_name=name, storage=storage)
    assert len(exactly_once(study)) == 6 and len(study.trials) == 6
    pruned = [t for t in study.trials if t.user_attrs.get("ended_by") == "pruner"]
    assert pruned, [(t.number, t.params, dict(t.intermediate_values)) for t in study.trials]
    for t in study.trials:
        assert (t.user_attrs["ended_by"] == "pruner") == ("outcome" not in t.user_attrs)
    for t in pruned:
        assert t.state == TrialState.PRUNED and t.user_attrs["pruned_epoch"] == max(t.intermediate_values) < 3
        tags = MlflowClient(MLFLOW).get_run(t.user_attrs["mlflow_run_id"]).data.tags
        assert tags["ended_by"] == "pruner" and "outcome" not in tags


@needs_servers
def test_a_worker_killed_mid_trial_is_retried_from_its_checkpoint(tmp_path, evaluator, capsys):
    storage = fresh_pg_database()
    spec = study_file(tmp_path, lrs=3, seeds=1, epochs=8, steps=40)
    name = f"kill-{uuid.uuid4().hex[:6]}"
    ckpt = tmp_path / "ckpt"
    common = ["--storage", storage, "--tracking-uri", MLFLOW, "--study-name", name, "--device", "cpu",
              "--checkpoint-dir", ckpt, "--heartbeat", 1]
    victim = gan_sweep("run", spec, *common, "--out", tmp_path / "r")
    deadline = time.time() + 300
    while len(list(ckpt.glob("*.pt"))) < 3:  # every member has checkpointed: the trials are mid-way
        assert victim.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.2)
    victim.kill()  # SIGKILL: no handler runs, the trial is left RUNNING
    victim.wait()
    finish_here(capsys, "worker", spec, *common)  # waits for the stale trials, fails them, runs their retries
    study = optuna.load_study(study_name=name, storage=storage)
    assert len(exactly_once(study)) == 3
    dead = [t for t in study.trials if t.state == TrialState.FAIL]
    # `auto` trains the three trials as one population, so the kill leaves all three in hand (a
    # reference-engine worker would hold one); each is retried once, from its own checkpoint.
    assert len(dead) == 3, [(t.number, t.state.name) for t in study.trials]
    for corpse in dead:
        retry = next(t for t in study.trials
                     if t.state in DONE and t.system_attrs.get("failed_trial") == corpse.number)
        assert retry.params == corpse.params and retry.user_attrs["seed"] == corpse.user_attrs["seed"]
        assert retry.user_attrs["resumed_from_epoch"] >= 1  # resumed, not restarted
        run = MlflowClient(MLFLOW).get_run(corpse.user_attrs["mlflow_run_id"])
        assert run.info.status == "FAILED" and "heartbeat" in run.data.tags["fail_reason"]


@needs_servers
def test_two_workers_starting_together_on_fresh_databases_both_succeed(tmp_path, evaluator):
    storage = fresh_pg_database()
    spec = study_file(tmp_path, lrs=4, seeds=1)
    common = ["--storage", storage, "--tracking-uri", MLFLOW, "--study-name", f"race-{uuid.uuid4().hex[:6]}",
              "--device", "cpu", "--checkpoint-dir", tmp_path / "ckpt", "--out", tmp_path / "r"]
    both = [gan_sweep("run", spec, *common) for _ in range(2)]
    for p in both:
        finish(p)
    assert len(exactly_once(optuna.load_study(study_name=common[5], storage=storage))) == 4


@pytest.mark.slow
def test_two_runs_starting_together_on_fresh_sqlite_stores_both_succeed(tmp_path, evaluator):
    spec = study_file(tmp_path, lrs=4, seeds=1)
    common = ["--storage", f"sqlite:///{tmp_path / 'o.db'}", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
              "--device", "cpu", "--checkpoint-dir", tmp_path / "ckpt", "--out", tmp_path / "r"]
    both = [gan_sweep("run", spec, *common) for _ in range(2)]
    for p in both:
        finish(p)
    study = optuna.load_study(study_name="scale-quick", storage=common[1])
    assert len(exactly_once(study)) == 4


@pytest.mark.parametrize("sig,engine", [(signal.SIGINT, "reference"), (signal.SIGTERM, "reference"),
                                        (signal.SIGINT, "population")])
@pytest.mark.slow
def test_a_signal_closes_the_trials_in_hand_and_a_rerun_finishes_only_the_missing(tmp_path, evaluator, sig, engine,
                                                                                   capsys):
    # 2 epochs of 150 steps: long enough (seconds) that the signal, sent a second into the first trial's
    # training, lands mid-training even when both trials train at once as a population.
    spec = study_file(tmp_path, lrs=2, seeds=1, epochs=30, steps=150)
    storage, tracking = f"sqlite:///{tmp_path / 'o.db'}", f"sqlite:///{tmp_path / 'm.db'}"
    common = ["--storage", storage, "--tracking-uri", tracking, "--device", "cpu", "--epochs", 2,
              "--checkpoint-dir", tmp_path / "ckpt", "--out", tmp_path / "r", "--engine", engine]
    in_hand = 1 if engine == "reference" else 2  # a population holds both trials at once
    proc = gan_sweep("run", spec, *common)
    deadline = time.time() + 300
    while True:  # wait until the first trial is training
        assert proc.poll() is None and time.time() < deadline
        study = watch_study(storage, "scale-quick-e2")
        if study and any(t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs for t in study.trials):
            break
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(sig)
    out = ended(proc, 120)
    assert proc.returncode == 130, out[-2000:]
    said = [line for line in out.splitlines() if line.startswith("interrupted (")]  # piped: one line, not wrapped
    assert len(said) == 1 and said[0].endswith("run the same command again to finish the missing trials"), out[-2000:]
    study = optuna.load_study(study_name="scale-quick-e2", storage=storage)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == in_hand and all(t.user_attrs["fail_reason"] == "interrupted" for t in failed)
    assert all(MlflowClient(tracking).get_run(t.user_attrs["mlflow_run_id"]).info.status == "KILLED" for t in failed)
    finish_here(capsys, "run", spec, *common)  # the signal needed a process; the rerun does not
    study = optuna.load_study(study_name="scale-quick-e2", storage=storage)
    assert len(exactly_once(study)) == 2 and len(study.trials) == 2 + in_hand


@pytest.mark.parametrize("args, message", [
    (["--storage", "postgresql://nobody@127.0.0.1:1/none"], "cannot reach storage postgresql://nobody@127.0.0.1:1/none"),
    (["--storage", "sqlit:///typo.db"], "storage URL 'sqlit:///typo.db' is not supported"),
    (["--storage", "sqlite:////no/such/folder/x.db"], "folder /no/such/folder does not exist"),
    (["--tracking-uri", "http://127.0.0.1:1"], "tracking URI http://127.0.0.1:1 is unreachable"),
    (["--tracking-uri", "mlruns"], "tracking URI 'mlruns' is not supported"),
])
@pytest.mark.slow
def test_bad_storage_and_tracking_urls_are_one_line_errors_and_nothing_is_written(tmp_path, args, message):
    spec = study_file(tmp_path, lrs=1, seeds=1)
    base = {"--storage": f"sqlite:///{tmp_path / 'o.db'}", "--tracking-uri": f"sqlite:///{tmp_path / 'm.db'}"}
    base.update(dict(zip(args[::2], args[1::2])))
    flat = [x for kv in base.items() for x in kv]
    proc = gan_sweep("run", spec, *flat, "--device", "cpu", cwd=tmp_path)
    out = ended(proc, 120)
    assert_one_line_error(out, proc.returncode, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scale.toml"]  # no database, no folder


def test_a_worker_for_a_study_that_does_not_exist_is_a_one_line_error(tmp_path):
    spec = study_file(tmp_path, lrs=1, seeds=1)
    proc = gan_sweep("worker", spec, "--storage", f"sqlite:///{tmp_path / 'o.db'}", "--tracking-uri",
                     f"sqlite:///{tmp_path / 'm.db'}", "--device", "cpu")
    out = ended(proc, 120)
    assert_one_line_error(out, proc.returncode, "study 'scale-quick' does not exist in sqlite:///")
    assert not (tmp_path / "o.db").exists() and not (tmp_path / "m.db").exists()  # nothing created


def test_corrupt_data_files_named_by_a_study_are_a_one_line_error(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + bytes(40))
    (tmp_path / "data" / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + bytes(8))
    spec = study_file(tmp_path, lrs=1, seeds=1)
    spec.write_text(spec.read_text().replace('dataset = "mnist-10k"', f'dataset = "idx"\ndata_dir = "{tmp_path / "data"}"'))
    proc = gan_sweep("run", spec, "--storage", f"sqlite:///{tmp_path / 'o.db'}", "--tracking-uri",
                     f"sqlite:///{tmp_path / 'm.db'}", "--device", "cpu")
    out = ended(proc, 120)
    assert_one_line_error(out, proc.returncode, "corrupt IDX file")
    assert not (tmp_path / "o.db").exists() and not (tmp_path / "m.db").exists()


@needs_servers
def test_a_password_in_a_working_postgresql_url_is_never_printed(tmp_path):
    url = fresh_pg_database().replace("postgresql://postgres@", "postgresql://postgres:SECRET@")  # trust auth
    proc = gan_sweep("run", study_file(tmp_path, lrs=1, seeds=1), "--storage", url, "--tracking-uri", MLFLOW,
                     "--device", "cpu", "--out", tmp_path / "r", cwd=tmp_path)
    out = finish(proc, timeout=300)
    assert "postgres:***@" in out and "SECRET" not in out
    assert not [p for p in (tmp_path / "r").rglob("*.*") if p.is_file() and b"SECRET" in p.read_bytes()]


@pytest.mark.slow
def test_a_killed_population_worker_s_trials_resume_from_their_checkpoints_and_end_as_if_never_killed(tmp_path, capsys,
                                                                                                     monkeypatch):
    """kill -9 of a worker training a population mid-trial (sqlite: no servers needed): the next worker
    retries every member from its own checkpoint, and in float64 each ends exactly as an uninterrupted run."""
    spec = study_file(tmp_path, lrs=3, seeds=1, epochs=6, steps=30)
    spec.write_text(spec.read_text().replace('dataset = "mnist-10k"', 'dataset = "mnist-10k"\ndtype = "float64"\n'
                                             'z_dim = 16\ng_hidden = "32,64"\nd_hidden = 32\nstop_early = false'))
    ckpt = tmp_path / "ckpt"
    killed = ["--storage", f"sqlite:///{tmp_path / 'k.db'}", "--tracking-uri", f"sqlite:///{tmp_path / 'km.db'}",
              "--device", "cpu", "--engine", "population", "--heartbeat", 1, "--checkpoint-dir", ckpt]
    victim = gan_sweep("run", spec, *killed, "--out", tmp_path / "r", cwd=tmp_path)
    deadline = time.time() + 300
    while len(list(ckpt.glob("*.pt"))) < 3:  # every member has checkpointed: the population is mid-way
        assert victim.poll() is None and time.time() < deadline, "no checkpoints appeared"
        time.sleep(0.2)
    victim.kill()
    victim.wait()
    time.sleep(3.5)  # three missed heartbeats
    monkeypatch.chdir(tmp_path)  # the retry and the uninterrupted run need no process of their own
    finish_here(capsys, "worker", spec, *killed)
    clean = ["--storage", f"sqlite:///{tmp_path / 'c.db'}", "--tracking-uri", f"sqlite:///{tmp_path / 'cm.db'}",
             "--device", "cpu", "--engine", "population", "--checkpoint-dir", tmp_path / "ckpt2"]
    finish_here(capsys, "run", spec, *clean, "--out", tmp_path / "r2")
    done = lambda url: {t.params["lr_d"]: t for t in optuna.load_study(study_name="scale-quick", storage=url).trials  # noqa: E731
                        if t.state in DONE}
    retried, uninterrupted = done(f"sqlite:///{tmp_path / 'k.db'}"), done(f"sqlite:///{tmp_path / 'c.db'}")
    assert set(retried) == set(uninterrupted) and len(retried) == 3
    for lr, t in retried.items():
        u = uninterrupted[lr]
        assert t.user_attrs["resumed_from_epoch"] >= 2
        assert t.user_attrs["outcome"] == u.user_attrs["outcome"]
        for key in ("last_loss_d", "last_loss_g", "last_d_real", "last_d_fake", "final_fld"):
            assert t.user_attrs[key] == pytest.approx(u.user_attrs[key], rel=1e-9), (lr, key)
        # The retry's MLflow run holds the whole curve, the epochs restored from the checkpoint included.
        history = sorted(MlflowClient(f"sqlite:///{tmp_path / 'km.db'}").get_metric_history(t.user_attrs["mlflow_run_id"],
                                                                                          "loss_d"), key=lambda m: m.step)
        assert [m.step for m in history] == list(range(1, 7)), lr
        assert history[-1].value == pytest.approx(u.user_attrs["last_loss_d"], rel=1e-9)
