"""Interrupts that must not be lost. Python raises KeyboardInterrupt at whatever bytecode the main thread
runs next, and that can be inside a finalizer (a database connection or a temporary file collected
mid-step), where Python prints "Exception ignored" and carries on: a Ctrl-C 8 s into `run lr-study`
was lost that way, training went on. So every SIGINT and SIGTERM is also noted here, and the run's
loop raises at its next safe point if the exception never arrived. Imports nothing: the entry point
installs its handler before anything heavy is imported."""

from __future__ import annotations

_pending: list[int] = []


def note(signum: int) -> None:
    """A SIGINT or SIGTERM arrived (the handler then raises as usual)."""
    _pending.append(signum)


def received() -> bool:
    """Whether any interrupt arrived in this process."""
    return bool(_pending)


def consume() -> int | None:
    """The first interrupt not yet acted on, now acted on (None when there is none)."""
    if not _pending:
        return None
    first = _pending[0]
    _pending.clear()
    return first
