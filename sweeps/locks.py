"""File locks beside sqlite databases: two processes creating a schema at once crash, and two
planners would enqueue a grid twice. (PostgreSQL gets an advisory lock in sweeps.storage.)"""

from __future__ import annotations

import contextlib
from pathlib import Path


@contextlib.contextmanager
def sqlite_lock(url: str, what: str):
    """An exclusive file lock beside a sqlite database (no-op for other URLs): schema creation
    by two processes at once crashes, and two planners would enqueue a grid twice."""
    if not url.startswith("sqlite:///"):
        yield
        return
    import fcntl  # POSIX; sqlite stores are for one machine

    with open(Path(url[len("sqlite:///"):]).resolve().with_suffix(f".{what}.lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
