"""Writing files without following links: every file gan-sweep writes goes through `write_atomic`,
every folder it makes for itself through `make_dir`.

A fresh temporary name in the target's folder is created exclusively (O_CREAT | O_EXCL never opens
a planted link), filled, and renamed over the target (a rename replaces a link at the target, it
does not write through it). A reader never sees half a file; a failure (a full disk) leaves neither
a partial file nor the temporary one. Reading goes through `read_plain` (no link followed, no FIFO
waited on, a size bound) and locks through `open_lock` (no link followed, never truncated).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path


class LinkError(OSError):
    """A folder gan-sweep writes into is a symbolic link (it could point anywhere)."""


_UNFINISHED: set[str] = set()
"""Temporary files of writes in progress, removed by `remove_unfinished` when the process must end at once."""


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write `data` to `path` (its folder exists) through an exclusive temporary file and a rename."""
    blob = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    _UNFINISHED.add(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would create it: mkstemp's 0600 hid reports from their readers
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        _UNFINISHED.discard(tmp)


def remove_unfinished() -> None:
    """Remove the temporary files of writes still in progress (before an exit that skips every cleanup)."""
    for tmp in list(_UNFINISHED):
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _umask() -> int:
    """The process's umask (reading it means setting it: set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_dir(folder: Path) -> Path:
    """`folder`, created if missing; a link standing at it is refused. (The folders above it are the
    user's to name: a link there is where the user chose to write.)"""
    if not os.path.lexists(folder):
        folder.mkdir(parents=True, exist_ok=True)
    if folder.is_symlink():
        raise LinkError(f"{folder} is a symbolic link: gan-sweep does not write through links")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder")
    return folder


class TooLarge(ValueError):
    """A file larger than its reader allows (read nothing of it)."""


def read_plain(path: Path, max_bytes: int | None = None) -> bytes | None:
    """The bytes of the plain file at `path`, or None where there is none, or a link or anything but a
    regular file stands there (a link is not followed: what it points at could be anything; a FIFO is
    not waited on). A file over `max_bytes` raises TooLarge before any of it is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        if max_bytes is not None and info.st_size > max_bytes:
            raise TooLarge(f"{path.name} is {info.st_size:,} bytes, more than the {max_bytes:,} it can hold")
        return f.read()


_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def open_lock(path: Path) -> int | None:
    """A descriptor of the lock file at `path`, created if missing, never through a link and never
    truncated; None where this user can neither create nor open it (a reader of another user's read-only
    folder: it writes nothing, so it races nobody). A link, a FIFO or anything but a plain file there is a
    LinkError."""
    flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO must not hang us
    try:
        fd = os.open(path, flags, 0o666)  # less the umask, as any file: another user's reader can open it too
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(path):
            raise LinkError(f"{path} is a symbolic link: gan-sweep does not open its locks through links") from None
        if exc.errno in _NOT_WRITABLE:  # a folder this user cannot write, or another user's lock it cannot read
            return None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LinkError(f"{path} is not a plain file: gan-sweep keeps its lock there (remove it)")
    return fd
