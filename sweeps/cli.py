"""The `gan-sweep` command line (typer). Each command lives in its own module; this one wires them
up and turns every error a user can cause into one line on stderr and exit code 2.

Optuna and MLflow are imported only inside the commands that need them, so `train --no-track`,
`bench` and `calibrate` run where only torch, typer and rich are installed.
"""

from __future__ import annotations

import logging
import sys
import warnings

import typer
import typer.main

from sweeps.commands import atlas, bench, calibrate, compare, report, run, study, train
from sweeps.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, interrupt_told

# Library chatter that says nothing to a user: schema creation notices, experimental-API warnings.
logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*is an experimental feature.*")

app = typer.Typer(
    name="gan-sweep",
    help="Sweep and ablate the training pitfalls of the seed's MNIST GAN, with evidence.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion; choices complete too
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"gan-sweep {version('gan-sweep')}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Sweep and ablate the training pitfalls of the seed's MNIST GAN, with evidence."""


for _module in (study, run, report, compare, atlas, train, bench, calibrate):
    _module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage errors (unknown flag, bad option value) become one line and exit 2,
    like the commands' own errors, instead of click's usage box."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="gan-sweep", standalone_mode=False)
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.TyperException as exc:  # typer's (vendored) click usage and parameter errors
        print(f"error: {' '.join(exc.format_message().split())}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR if exc.exit_code == 2 else exc.exit_code)
    code = code if isinstance(code, int) else 0
    if code == EXIT_INTERRUPTED and not interrupt_told():  # typer's own catch of a Ctrl-C says nothing
        print("error: interrupted", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
