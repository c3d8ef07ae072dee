"""The decorator every command wears: a user error is one line and exit 2, and nothing printed shows a
password."""

from __future__ import annotations

import functools
import sys

import typer

from sweeps.errors import EXIT_USER_ERROR, USER_ERRORS
from sweeps.masked_io import masked_streams


def guarded(func):
    """Decorate a command: a user error prints `error: <one line>` on stderr and exits 2, and nothing
    it or a library prints can show a password (`masked_io`).

    Inside the command rather than around the app, so typer's test runner sees the same
    exit code and message as the installed command does.
    """
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with masked_streams():
            try:
                return func(*args, **kwargs)
            except USER_ERRORS as exc:
                msg = " ".join(str(exc).split())  # one line, whatever the library wrote
                print(f"error: {msg}", file=sys.stderr)
                raise typer.Exit(EXIT_USER_ERROR) from None

    return wrapper
