"""The `gan-sweep` entry point: nothing heavy is imported before Ctrl-C is handled, so an interrupt
at any moment (even while torch is still importing) ends in one line and exit code 130."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    try:
        from .cli import main as cli_main

        cli_main(argv)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
