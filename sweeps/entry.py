"""The `gan-sweep` entry point: nothing heavy is imported before Ctrl-C is handled, so an interrupt
at any moment (even while torch is still importing) ends in one line and exit code 130; a fault no
command foresaw (a full disk, a store that died mid-run) ends in one line and exit code 1, with the
traceback only when GAN_SWEEP_DEBUG=1; and nothing printed shows a password (`masked_io`)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from sweeps import signals

EXIT_FAULT = 1


def main(argv: list[str] | None = None) -> None:
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # a job started with SIGINT ignored stays so
        signal.signal(signal.SIGINT, _on_sigint)
    sys.unraisablehook = _unraisable
    try:
        from sweeps.masked_io import masked_streams

        with masked_streams():
            try:
                from sweeps.cli import main as cli_main

                cli_main(argv)
            except KeyboardInterrupt:
                _exit_interrupted()
            except SystemExit as exc:
                from sweeps.errors import EXIT_INTERRUPTED

                if exc.code == EXIT_INTERRUPTED:  # a Ctrl-C typer caught, said in one line: leave as below, not
                    _flush_and_exit(EXIT_INTERRUPTED)  # through the interpreter's finalising (could end as -2)
                raise
            except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
                if signals.received():  # Ctrl-C mid-import leaves half a module: what fails next is the interrupt
                    _exit_interrupted()
                sys.exit(_fault(exc))
    except KeyboardInterrupt:  # before the streams were masked: nothing secret was given yet
        _exit_interrupted()


def _exit_interrupted() -> None:
    """One line and exit code 130, now. Not through sys.exit: an interrupt that landed while an extension
    ran code through the C API during an import (torch does, starting) leaves CPython's "unhandled
    KeyboardInterrupt" flag set even though it was caught here, and the interpreter then ends by killing
    itself with SIGINT after finalising (exit status -2, about one start-up Ctrl-C in two here). The
    trial's records were closed on the way up, before this point; the streams are flushed."""
    print("error: interrupted", file=sys.stderr)
    _flush_and_exit(130)


def _flush_and_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _on_sigint(signum, frame) -> None:
    signals.note(signum)
    signal.default_int_handler(signum, frame)


def _unraisable(info) -> None:
    """An interrupt a finalizer swallowed is noted (`signals`) and acted on at the run's next safe point
    (the end of the epoch in hand, seconds to a minute away): said in one line, instead of Python's
    "Exception ignored ... KeyboardInterrupt" traceback, which would only alarm."""
    if info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt):
        print("interrupt received: stopping at the end of the epoch in hand", file=sys.stderr)
        return
    sys.__unraisablehook__(info)


def _fault(exc: BaseException) -> int:
    import traceback

    if os.environ.get("GAN_SWEEP_DEBUG") == "1":
        traceback.print_exception(exc)
    what = " ".join(str(exc).split())[:400] or "(no message)"
    print(f"error: {type(exc).__name__}: {what} (a fault, not a mistake in the command: its records are closed "
          f"where the stores allowed; run the same command again to resume; GAN_SWEEP_DEBUG=1 shows the "
          f"traceback)", file=sys.stderr)
    return EXIT_FAULT
