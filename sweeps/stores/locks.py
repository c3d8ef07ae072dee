"""File locks for sqlite stores: two processes creating a schema at once crash, two planners would
enqueue a grid twice, and sqlite has no row locks for claiming trials. (PostgreSQL gets an advisory
lock in sweeps.stores.storage.)

The lock files live in a per-user folder under the system's temporary directory, keyed by the
database's absolute path, so a user's working folder holds only what they asked for. sqlite stores
are for one machine, and every process on it sees the same temporary directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path


def lock_path(db: Path, what: str) -> Path:
    """Where the `what` lock of the sqlite database `db` lives."""
    folder = Path(tempfile.gettempdir()) / f"gan-sweep-locks-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    key = hashlib.sha1(str(db.resolve()).encode()).hexdigest()[:16]
    return folder / f"{db.name}-{key}.{what}.lock"


@contextlib.contextmanager
def sqlite_lock(url: str, what: str):
    """An exclusive file lock for a sqlite database (a no-op for other URLs)."""
    from sweeps.urls import sqlite_path

    path = sqlite_path(url)
    if path is None:
        yield
        return
    import fcntl  # POSIX; sqlite stores are for one machine

    with open(lock_path(path, what), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
