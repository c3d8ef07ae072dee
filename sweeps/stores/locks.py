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
import errno
import os
import stat
from pathlib import Path

from gan_core.files import LinkError

_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
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


def open_lock(path: Path) -> int | None:
    """A descriptor of the lock file at `path`, created if missing (0600), never through a link and never
    truncated; None where its folder cannot be written (a reader of a read-only folder: it writes
    nothing, so it races nobody). A link, a FIFO or anything but a plain file there is a LinkError."""
    flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO must not hang us
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(path):
            raise LinkError(f"{path} is a symbolic link: gan-sweep does not open its locks through links") from None
        if exc.errno in _NOT_WRITABLE and not os.path.lexists(path):
            return None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LinkError(f"{path} is not a plain file: gan-sweep keeps its lock there (remove it)")
    return fd


@contextlib.contextmanager
def sqlite_lock(url: str, what: str):
    """An exclusive file lock for a sqlite database (a no-op for other URLs)."""
    from sweeps.urls import sqlite_path

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
