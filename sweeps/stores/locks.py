"""File locks for sqlite stores: two processes creating a schema at once crash, two planners would
enqueue a grid twice, and sqlite has no row locks for claiming trials. (PostgreSQL gets an advisory
lock in sweeps.stores.storage.)

A lock lives beside its database, in the folder the user named for it (`.gan_sweep.db.plan.lock`):
never in a shared folder such as the system's temporary one, where another user could create the
folder first and plant links named like the locks. It is opened without following a link, never
truncated, and must be a plain file: a link or anything else standing at its name is refused in one
line. Every process on the machine that opens the database sees the same folder, hence the same lock.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from gan_core.files import LinkError, open_lock

KINDS = ("schema", "plan", "claim")
"""The locks a sqlite store can have: creating its schema, planning a study's grid, claiming a trial."""


def lock_path(db: Path, what: str) -> Path:
    """Where the `what` lock of the sqlite database `db` lives: beside it."""
    return db.parent / f".{db.name}.{what}.lock"


def check_lock_paths(url: str) -> None:
    """Refuse, before anything is created, a link or anything but a plain file standing where one of a
    sqlite store's locks will be opened (a no-op for other URLs)."""
    from sweeps.urls import sqlite_path

    path = sqlite_path(url)
    for what in KINDS if path is not None else ():
        lock = lock_path(path.resolve(), what)
        if lock.is_symlink() or (os.path.lexists(lock) and not lock.is_file()):
            raise LinkError(f"{lock} is a symbolic link or not a plain file: gan-sweep keeps a lock there and does "
                            f"not open it through a link (remove it)")


@contextlib.contextmanager
def sqlite_lock(url: str, what: str):
    """An exclusive file lock for a sqlite database (a no-op for other URLs)."""
    from sweeps.urls import sqlite_path

    assert what in KINDS, what  # check_lock_paths checks the places of KINDS only
    path = sqlite_path(url)
    if path is None:
        yield
        return
    import fcntl  # POSIX; sqlite stores are for one machine

    fd = open_lock(lock_path(path.resolve(), what))  # one lock whichever path names the database
    if fd is None:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
