"""Errors a user can cause: each becomes one line on stderr and exit code 2."""

from __future__ import annotations

from gan_core.config import ConfigError
from gan_core.errors import DataError
from gan_core.files import LinkError


class UserError(Exception):
    """A mistake in what the user asked for (name, file, value, URL); the message is one line."""


EXIT_INTERRUPTED = 130
_interrupt_told: list[bool] = []


def interrupt_told(told: bool = False) -> bool:
    """Whether a command already told the user how it handled a Ctrl-C (`told=True` records that it did):
    typer turns an interrupt it catches into a silent exit 130, and the entry point must then say it."""
    if told:
        _interrupt_told.append(True)
    return bool(_interrupt_told)


USER_ERRORS: tuple[type[Exception], ...] = (UserError, ConfigError, DataError, LinkError)
"""LinkError: a link planted where gan-sweep writes is refused like a bad input (nothing is written)."""
EXIT_USER_ERROR = 2
