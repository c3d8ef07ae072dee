"""No write through a link: a symbolic link planted where gan-sweep writes (a checkpoint, a report's file
or folder, MLflow's artifacts, a store's lock, the evaluator's cache lock) is replaced or refused, never
written through, and what it points at is left as it was; a place a run will write is checked before any
store exists."""

import os
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error, cli, stores, study_file

from gan_core.files import LinkError


def test_a_link_planted_at_a_checkpoint_is_replaced_not_written_through(tiny_config, mnist, tmp_path):
    from gan_core.loop import save_checkpoint
    from gan_core.trainer import Trainer

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "run.pt").symlink_to(victim)
    trainer = Trainer(tiny_config, mnist)
    save_checkpoint(trainer, 0, ckpt / "run.pt", [], "reference")
    assert victim.read_text() == "keep me"
    assert not (ckpt / "run.pt").is_symlink() and (ckpt / "run.pt").stat().st_size > 1000
    assert sorted(p.name for p in ckpt.iterdir()) == ["run.pt"]  # no temporary file left


def test_report_files_and_folders_planted_as_links_are_not_written_through(finished_study, tmp_path):
    storage, tracking = stores(finished_study)
    out = tmp_path / "out"
    (out / "scale-quick").mkdir(parents=True)
    victim = tmp_path / "victim.csv"
    victim.write_text("keep me")
    (out / "scale-quick" / "trials.csv").symlink_to(victim)
    res = cli("report", "scale-quick", "--storage", storage, "--tracking-uri", tracking,
              "--out", out)
    assert res.exit_code == 0, res.output
    assert victim.read_text() == "keep me" and not (out / "scale-quick" / "trials.csv").is_symlink()
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "scale-quick" / "figures").rename(tmp_path / "old-figures")
    (out / "scale-quick" / "figures").symlink_to(outside)
    res = cli("report", "scale-quick", "--storage", storage, "--tracking-uri", tracking,
              "--out", out)
    assert_one_line_error(res.stderr, res.exit_code, "is a symbolic link")
    assert not list(outside.iterdir())


def _planted(tmp_path, where: str):
    """A victim file and a link to it planted at `where` (a path relative to tmp_path)."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    target = tmp_path / where
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(victim if not where.endswith(("ckpt", "mlartifacts", "figures")) else tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir(exist_ok=True)
    return victim


@pytest.mark.parametrize("where,message", [
    ("ckpt", "--checkpoint-dir"),                               # the trials' checkpoint folder
    ("mlartifacts", "artifacts folder"),                        # every image, figure and report MLflow copies
    ("r/scale-quick/figures", "--out"),                         # the study report's figures
    (".o.db.plan.lock", "lock"),                                # a lock of the Optuna store
    (".m.db.schema.lock", "lock"),                              # the lock of the MLflow store
])
def test_a_link_where_a_run_will_write_is_refused_before_any_store_exists(tmp_path, monkeypatch, where, message):
    monkeypatch.chdir(tmp_path)
    victim = _planted(tmp_path, where)
    spec = study_file(tmp_path, lrs=1, seeds=1)
    storage, tracking = stores(tmp_path)
    res = cli("run", spec, "--device", "cpu", "--storage", storage, "--tracking-uri", tracking,
              "--out", tmp_path / "r", "--checkpoint-dir", tmp_path / "ckpt")
    assert_one_line_error(res.stderr, res.exit_code, message)
    assert "symbolic link" in res.stderr
    assert not (tmp_path / "o.db").exists() and not (tmp_path / "m.db").exists()
    assert victim.read_text() == "keep me" and not list((tmp_path / "elsewhere").iterdir())


def test_a_link_planted_at_the_artifacts_folder_mid_run_is_not_written_through(tmp_path, monkeypatch):
    """Checked again when MLflow writes: a link planted after the run's checks is refused then."""
    from sweeps.stores.tracking import Tracker

    monkeypatch.chdir(tmp_path)
    tracker = Tracker(f"sqlite:///{tmp_path / 'm.db'}", "x")
    run = tracker.start_run("r")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "mlartifacts").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(LinkError):
        tracker.log_samples(run, torch.zeros(4, 1, 28, 28), 0)
    assert not list((tmp_path / "elsewhere").iterdir())


def _as_nobody() -> dict:
    """Keyword arguments for subprocess that run a child as another user (nobody), where this process may."""
    import pwd

    if os.getuid() != 0:
        pytest.skip("running a child as another user needs root")
    nobody = pwd.getpwnam("nobody")
    return dict(user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[])


def _plant_as(kwargs: dict, links: dict[Path, Path]) -> None:
    """Another user creates the links (and their folders) in a shared folder, with the system's shell."""
    import shlex

    script = "; ".join(f"mkdir -p {shlex.quote(str(link.parent))} && ln -s {shlex.quote(str(target))} "
                       f"{shlex.quote(str(link))}" for link, target in links.items())
    subprocess.run(["/bin/sh", "-c", "set -e; " + script], check=True, timeout=60, cwd="/", **kwargs)


def test_another_user_s_links_in_a_shared_folder_never_empty_a_file(tmp_path, monkeypatch):
    """The attack: another user plants links named like gan-sweep's locks where they can write: the old
    per-user lock folder in the shared temporary folder, and beside a store kept in a shared (sticky,
    world-writable) folder. The run either never opens them or refuses them; the file they point at keeps
    its bytes."""
    import shutil
    import tempfile

    kwargs = _as_nobody()
    base = Path(tempfile.mkdtemp(prefix="gan-sweep-shared-"))  # pytest's own folders are private to root
    base.chmod(0o755)
    shared = base / "shared"
    tmpdir = base / "tmp"  # this run's $TMPDIR, shared with the attacker
    for folder in (shared, tmpdir):
        folder.mkdir()
        folder.chmod(0o1777)
    precious = tmp_path / "precious.txt"
    precious.write_text("the victim's data")
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))  # Python keeps the first one it found
    try:
        _attack(kwargs, tmp_path, shared, tmpdir, precious, monkeypatch)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _attack(kwargs, tmp_path, shared, tmpdir, precious, monkeypatch) -> None:
    import hashlib

    db = shared / "o.db"
    key = hashlib.sha1(str(db.resolve()).encode()).hexdigest()[:16]  # how the old lock names were made
    old_folder = tmpdir / f"gan-sweep-locks-{os.getuid()}"
    _plant_as(kwargs, {old_folder / f"o.db-{key}.{what}.lock": precious for what in ("schema", "plan", "claim")})
    monkeypatch.chdir(tmp_path)
    spec = study_file(tmp_path, lrs=1, seeds=1)
    args = ["run", spec, "--device", "cpu", "--storage", f"sqlite:///{db}", "--tracking-uri",
            f"sqlite:///{tmp_path / 'm.db'}", "--out", tmp_path / "r", "--checkpoint-dir", tmp_path / "ckpt"]
    res = cli(*args)  # the locks are not there any more: the run goes on and never opens the links
    assert res.exit_code == 0, res.output
    assert precious.read_text() == "the victim's data"
    db.unlink()
    for lock in shared.glob(".o.db.*.lock"):
        lock.unlink()
    _plant_as(kwargs, {shared / f".o.db.{what}.lock": precious for what in ("schema", "plan", "claim")})
    assert (shared / ".o.db.plan.lock").lstat().st_uid != os.getuid()
    res = cli(*args[:-4], "--out", tmp_path / "r2", "--checkpoint-dir", tmp_path / "ckpt2")
    assert_one_line_error(res.stderr, res.exit_code, "lock")  # beside the store: refused, not followed
    assert precious.read_text() == "the victim's data"
    assert not db.exists() and not (tmp_path / "r2").exists()


def test_a_lock_is_opened_without_following_a_link_and_never_truncated(tmp_path):
    from sweeps.stores.locks import sqlite_lock

    db = tmp_path / "o.db"
    lock = tmp_path / ".o.db.plan.lock"
    lock.write_text("someone's bytes")  # a plain file already there is used as it is, not emptied
    with sqlite_lock(f"sqlite:///{db}", "plan"):
        pass
    assert lock.read_text() == "someone's bytes"
    lock.unlink()
    victim = tmp_path / "victim"
    victim.write_text("keep")
    lock.symlink_to(victim)
    with pytest.raises(LinkError), sqlite_lock(f"sqlite:///{db}", "plan"):
        pass
    assert victim.read_text() == "keep"
    lock.unlink()
    os.mkfifo(lock)  # a FIFO would block an open: refused at once instead
    with pytest.raises(LinkError, match="not a plain file"), sqlite_lock(f"sqlite:///{db}", "plan"):
        pass


def test_the_evaluator_s_cache_lock_is_never_opened_through_a_link(tmp_path, monkeypatch, mnist):
    """Data sets other than MNIST train their classifier once, under a lock in the cache folder."""
    import dataclasses

    from gan_core.judge.classifier import CLASSIFIER_VERSION
    from gan_core.judge.weights import load_weights

    monkeypatch.setenv("GAN_SWEEP_CACHE", str(tmp_path / "cache"))
    ds = dataclasses.replace(mnist, name="idx")
    folder = tmp_path / "cache" / "evaluator"
    folder.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (folder / f"idx-{ds.fingerprint()}-v{CLASSIFIER_VERSION}.lock").symlink_to(victim)
    with pytest.raises(LinkError):
        load_weights(ds, torch.device("cpu"))
    assert victim.read_text() == "keep"


def test_a_lock_is_created_readable_by_other_users_like_any_file(tmp_path):
    """Another user's `gan-sweep report` of a store in this folder opens the same lock to read it."""
    from sweeps.stores.locks import sqlite_lock

    old = os.umask(0o022)
    try:
        with sqlite_lock(f"sqlite:///{tmp_path / 'o.db'}", "schema"):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / ".o.db.schema.lock").stat().st_mode & 0o777 == 0o644
