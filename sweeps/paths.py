"""Output paths: names safe as one path component, folders proven to stay under the folder the user
named, and folders checked writable before any work starts."""

from __future__ import annotations

import os
import re
from pathlib import Path

from sweeps.errors import UserError

REPORT_FOLDERS = ("figures",)
"""The folders a study's report makes inside its own folder."""
ATLAS_FOLDERS = ("thumbs",)
"""The folders the atlas makes inside its own folder."""
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""A study name: a letter or digit, then letters, digits, dots, dashes or underscores (100 at most)."""


def check_name(name: str, what: str = "study name") -> str:
    """`name` if it is safe as a file name, MLflow experiment and Optuna study; else a one-line error."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name:
        shown = repr(name) if len(str(name)) <= 60 else repr(str(name)[:60]) + "..."
        raise UserError(f"{what} {shown} is not allowed: use 1 to 100 letters, digits, '.', '-' or '_', "
                        f"starting with a letter or digit")
    return name


def under(folder: Path, name: str) -> Path:
    """folder / name, proven to stay inside folder (after resolving links)."""
    check_name(name)
    target = (folder / name).resolve()
    if not target.is_relative_to(folder.resolve()):
        raise UserError(f"{folder / name} would be outside {folder}")
    return target


def check_writable_dir(folder: Path, flag: str, inside: tuple[str, ...] = ()) -> None:
    """A folder that exists (or can be created) and can be written, with no link standing at it or at the
    subfolders `inside` it that gan-sweep will make (a link could point anywhere); nothing is created here."""
    for path in (folder, *(folder / sub for sub in inside)):
        if path.is_symlink():
            raise UserError(f"{flag} {path} is a symbolic link: gan-sweep does not write through links")
    for sub in inside:
        if (folder / sub).exists():
            check_writable_dir(folder / sub, flag)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{flag} {folder} is a file, not a folder")
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK) or not can_create_in(probe):
        raise UserError(f"{flag} {folder}: {probe} is not writable")


def can_create_in(folder: Path) -> bool:
    """Whether a file can be created in `folder`, tried (and removed at once): permission bits say yes to
    root everywhere, and to anyone on /proc or a read-only mount, where every write then fails."""
    import tempfile

    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".gan-sweep-probe-")
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def check_writable_file(path: Path, flag: str) -> None:
    """A file path whose folder exists and can be written, and that is not a folder itself."""
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder, not a file")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UserError(f"{flag} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)) \
            or not can_create_in(parent):
        raise UserError(f"{flag} {path} is not writable")
