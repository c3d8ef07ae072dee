"""A new sqlite tracking store starts from a copy of an empty one, not from MLflow's migrations.

MLflow gives a new database its schema by running every Alembic migration since its first release,
about 3 s of CPU on this project's 2-core machine: more than a smoke study's training. The result
depends only on MLflow's version, so it is made once per version (by MLflow's own function, into
the cache folder) and copied. The store is then opened by MLflow as usual: its schema check refuses
a copy at another revision, and it adds the default experiment with this store's artifact root.
Anything unexpected (another MLflow, a full disk) falls back to MLflow's own way.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SQLITE_MAGIC = b"SQLite format 3\x00"


def template_path(cache: Path) -> Path:
    """The empty store of the installed MLflow, in `cache`."""
    import mlflow

    return cache / f"mlflow-{mlflow.__version__}-empty.db"


def _make_template(target: Path) -> None:
    """MLflow's own schema creation, on a temporary database, renamed to `target` when complete."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables  # noqa: I001 - what MLflow's store calls on an empty db

    from gan_core.files import make_dir, write_atomic

    make_dir(target.parent)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".mlflow-schema-") as tmp:
        db = Path(tmp) / "empty.db"
        engine = sqlalchemy.create_engine(f"sqlite:///{db}")
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
        write_atomic(target, db.read_bytes())


def _read_template(path: Path) -> bytes | None:
    """The template's bytes, or None where it is not a plain SQLite file (a link is not followed)."""
    from gan_core.files import read_plain

    blob = read_plain(path)
    return blob if blob is not None and blob.startswith(SQLITE_MAGIC) else None


def seed(db: Path, cache: Path) -> bool:
    """Put an empty store of the installed MLflow at `db` if nothing stands there (the caller holds the
    store's schema lock). True when it did; False leaves `db` alone for MLflow to create."""
    if os.path.lexists(db):
        return False  # an existing store (or a link planted there) is MLflow's to judge, as before
    from gan_core.files import write_atomic

    try:
        template = template_path(cache)
        blob = _read_template(template)
        if blob is None:
            _make_template(template)
            blob = _read_template(template)
        if blob is None:
            return False
        write_atomic(db, blob)  # readable as sqlite would leave it (`mlflow ui` may run as another user)
    except Exception:  # noqa: BLE001 - any failure (a full disk, another MLflow): MLflow creates it itself
        return False  # write_atomic leaves no partial file behind
    return True

