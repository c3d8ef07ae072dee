"""A new sqlite tracking store is a copy of an empty one made once per MLflow version: it must be the
store MLflow would have made, and anything odd (a link, a broken template, a full disk) must leave
the store to MLflow as before."""

import errno
import sqlite3
from pathlib import Path

from mlflow.tracking import MlflowClient

from sweeps.stores import mlflow_schema
from sweeps.stores.tracking import Tracker


def _schema(db: Path) -> tuple[list, list]:
    """Every table's and index's definition, and the Alembic revision. A definition is compared as the
    set of its lines: MLflow's own migrations write a table's CHECK constraints in an order that changes
    from one process to the next (a set of names, hashed anew per interpreter)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    lines = lambda sql: sorted(x.strip().rstrip(",") for x in (sql or "").splitlines())  # noqa: E731
    return [(kind, name, table, lines(sql)) for kind, name, table, sql in rows], version


def test_a_seeded_store_is_the_store_mlflow_makes_itself(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow puts the default experiment's artifacts under ./mlruns
    monkeypatch.setenv("GAN_SWEEP_CACHE", str(tmp_path / "cache"))
    seeded, own = tmp_path / "seeded.db", tmp_path / "own.db"
    tracker = Tracker(f"sqlite:///{seeded}", "exp", "a description")  # seeds, then MLflow opens it
    assert mlflow_schema.template_path(tmp_path / "cache").is_file()
    MlflowClient(f"sqlite:///{own}").search_experiments()  # MLflow's own migrations
    assert _schema(seeded) == _schema(own) and _schema(own)[0] and _schema(own)[1]
    default = lambda db: MlflowClient(f"sqlite:///{db}").get_experiment("0")  # noqa: E731
    assert (default(seeded).name, default(seeded).artifact_location) == (default(own).name, default(own).artifact_location)
    assert tracker.client.get_experiment(tracker.experiment_id).name == "exp"
    assert seeded.stat().st_mode & 0o777 == own.stat().st_mode & 0o777  # readable as sqlite would leave it


def test_an_existing_store_or_a_link_standing_there_is_left_alone(tmp_path):
    cache = tmp_path / "cache"
    kept = tmp_path / "kept.db"
    kept.write_bytes(b"not touched")
    link = tmp_path / "link.db"
    link.symlink_to(tmp_path / "elsewhere.db")
    assert not mlflow_schema.seed(kept, cache) and kept.read_bytes() == b"not touched"
    assert not mlflow_schema.seed(link, cache) and link.is_symlink() and not (tmp_path / "elsewhere.db").exists()


def test_a_broken_or_linked_template_is_made_again_not_copied(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    template = mlflow_schema.template_path(cache)
    template.write_bytes(b"garbage, not SQLite")
    assert mlflow_schema.seed(tmp_path / "a.db", cache)
    assert _schema(tmp_path / "a.db")[1]  # MLflow's schema, not the garbage
    secret = tmp_path / "secret.db"
    secret.write_bytes(b"SQLite format 3\x00 someone else's file")
    template.unlink()
    template.symlink_to(secret)
    assert mlflow_schema.seed(tmp_path / "b.db", cache)
    assert _schema(tmp_path / "b.db")[1] and not template.is_symlink()
    assert secret.read_bytes() == b"SQLite format 3\x00 someone else's file"


def test_a_full_disk_leaves_nothing_and_mlflow_creates_the_store_as_before(tmp_path, monkeypatch):
    import os

    real = os.fdopen

    def full(fd, mode="r", *args, **kwargs):  # every file opened for writing finds the disk full
        if "w" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, mode, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", full)
    db = tmp_path / "m.db"
    assert not mlflow_schema.seed(db, tmp_path / "cache")
    monkeypatch.undo()
    assert not db.exists() and not [p for p in tmp_path.rglob("*") if p.is_file()]
    MlflowClient(f"sqlite:///{db}").search_experiments()
    assert _schema(db)[1]
