"""`gan-sweep train`: one run from the command line, every config key a flag.

The flags are generated from the run config's fields (their docstrings are the help), so a
new toggle in gan_core.config is a new flag here without further code.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from pathlib import Path
from typing import Optional

import typer

from gan_core import config as C
from gan_core.config import RunConfig
from sweeps.commands.guard import guarded
from sweeps.console import err, out
from sweeps.errors import UserError
from sweeps.paths import check_writable_dir
from sweeps.running.progress import TrainDisplay
from sweeps.study.defaults import DEFAULT_TRACKING_URI
from sweeps.urls import mask


def _flag_type(hint) -> tuple[object, dict]:
    """The typer annotation and Option keywords of a config field, from its type: numbers are parsed by
    the CLI, a Literal's choices are listed in --help and completed by the shell."""
    import typing

    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Literal:
        return Optional[hint], {}
    if hint is bool:
        return Optional[bool], {}
    if hint in (int, float):
        return Optional[hint], {}
    if type(None) in args and (float in args or int in args):
        return Optional[str], {"metavar": f"{'FLOAT' if float in args else 'INT'}|off"}
    if typing.get_origin(hint) is tuple:
        return Optional[str], {"metavar": "W1,W2"}
    return Optional[str], {"metavar": "DIR" if type(None) in args else "TEXT"}


def config_flag_params(defaults: RunConfig | None = None) -> list[inspect.Parameter]:
    """One `--key` typer option per flat config key (None = keep the config's value), typed from the field."""
    from rich.markup import escape

    flat = (defaults or RunConfig()).to_flat()
    params = []
    for key in flat:
        annotation, extra = _flag_type(C.field_type(key))
        default = flat[key]
        shown = default  # the flat view already writes a disabled clip or cap as 'off'
        name = f"--{key.replace('_', '-')}"
        decls = [f"{name}/--no-{key.replace('_', '-')}"] if annotation == Optional[bool] else [name]
        option = typer.Option(None, *decls, help=escape(f"{C.FIELD_DOCS.get(key, '')} (default: {shown})"),
                              show_default=False, rich_help_panel="Run config", **extra)
        params.append(inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))
    return params


def flat_overrides(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k in C.FLAT_KEYS and v is not None}


def train(out_dir: Optional[Path], track: bool, tracking_uri: str, experiment: str, **flags) -> None:
    """Train one run, then print its outcome with the evidence and write its files."""
    # torch comes in here, not at the top: `gan-sweep --help` and its usage errors start without it
    from gan_core import memory, precision
    from gan_core.data import load_dataset
    from gan_core.device import resolve_device
    from gan_core.judge.evaluator import Evaluator
    from gan_core.trainer import Trainer
    from sweeps.stores.artifacts import write_run

    # Everything a user can get wrong is checked before any file is written.
    cfg = RunConfig.from_flat(flat_overrides(flags))
    device = resolve_device(cfg.device)
    precision.check(cfg.precision, cfg.dtype, device)
    folder = out_dir or Path("runs") / time.strftime("train-%Y%m%d-%H%M%S")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"output folder {folder} exists and is not an empty folder")
    check_writable_dir(folder, "--out")
    dataset = load_dataset(cfg.data.dataset, cfg.data.data_dir)
    if cfg.data.batch_size > len(dataset.images):
        raise UserError(f"batch_size {cfg.data.batch_size} is larger than the data set ({len(dataset.images)} images)")
    memory.check([cfg], 1, len(dataset.images), dataset.image_dim, memory.device_free(device))
    if track:
        from sweeps.stores.tracking import SingleRunTracker, probe_tracking

        probe_tracking(tracking_uri, experiment)  # read-only: an Optuna file or garbage is refused untouched
    evaluator = Evaluator(dataset, device, log=err.print)  # the first thing that keeps a file (its cache)
    tracker = SingleRunTracker(tracking_uri, experiment) if track else None  # opened before training
    err.print(f"data: {dataset.source}")
    err.print(f"evaluator: {evaluator.source}, {100 * evaluator.accuracy:.2f}% held-out accuracy; success needs "
              f"FLD <= {evaluator.thresholds().success_fld:.1f}, diverse and digit-like samples")

    with TrainDisplay(cfg.budget.epochs) as display:
        callbacks = [display.on_epoch] + ([tracker.callback] if tracker else [])
        trainer = Trainer(cfg, dataset, evaluator, callbacks)
        if tracker:
            tracker.start(cfg)
        try:
            result = trainer.run()
        except BaseException as exc:
            if tracker:
                tracker.end_failed(exc)
            raise
    files = write_run(result, folder)
    if tracker:
        tracker.finish(result, files)
    v, q = result.verdict, result.quality
    out.print(f"[bold]{v.label}[/bold] (epoch {v.epoch}{', sealed early' if v.sealed else ''}): {v.evidence}")
    if q is not None:
        out.print("quality: " + "  ".join(f"{k} {val:.3g}" for k, val in dataclasses.asdict(q).items()))
    last = result.history[-1]
    out.print(f"{len(result.history)} epochs on {result.device}, {last.samples_per_s:.0f} samples/s; "
              f"files in {folder}/ ({', '.join(p.name for p in files.values())})")
    if tracker:
        out.print(f"MLflow run {tracker.run_id} in experiment {experiment!r} at {mask(tracking_uri)}")


def register(app: typer.Typer) -> None:
    def command(**kwargs):
        return train(kwargs.pop("out"), kwargs.pop("track"), kwargs.pop("tracking_uri"),
                     kwargs.pop("experiment"), **kwargs)

    fixed = [
        inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path], default=typer.Option(
            None, "--out", help="Output folder for samples.png, losses.png, summary.json (default runs/train-<time>).")),
        inspect.Parameter("track", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=typer.Option(
            True, "--track/--no-track", help="Log the run to MLflow (--no-track needs no mlflow).")),
        inspect.Parameter("tracking_uri", inspect.Parameter.KEYWORD_ONLY, annotation=str, default=typer.Option(
            DEFAULT_TRACKING_URI, "--tracking-uri", help="MLflow tracking URI.")),
        inspect.Parameter("experiment", inspect.Parameter.KEYWORD_ONLY, annotation=str, default=typer.Option(
            "train", "--experiment", help="MLflow experiment for single runs.")),
    ]
    params = fixed + config_flag_params()
    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = train.__doc__
    app.command("train", help="Train one run of the seed's GAN; every toggle is a flag.")(guarded(command))
