"""`gan-sweep studies | show | run`: the built-in studies, what one sweeps, and running it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .console import epoch_line, err, out
from .defaults import DEFAULT_STORAGE, DEFAULT_TRACKING_URI
from .errors import UserError, guarded
from .spec import PROFILES, Profile, StudySpec, builtin_names, load_spec

ENGINES = ("auto", "reference", "population")


def trial_count(spec: StudySpec, profile: Profile) -> int:
    configs = len(spec.grid()) if spec.sampler == "grid" else profile.trials
    return configs * len(spec.seeds)


def studies() -> None:
    """List the built-in studies, one line each."""
    table = Table(box=None, show_header=True, header_style="bold")
    table.add_column("study")
    table.add_column("trials (quick)", justify="right")
    table.add_column("what it asks")
    for name in builtin_names():
        spec = load_spec(name)
        n = trial_count(*spec.for_profile("quick")) if "quick" in spec.profiles else "-"
        table.add_row(name, str(n), spec.description.split(". ")[0].rstrip("."))
    out.print(table)


def show(study: str) -> None:
    """What a study sweeps, its budget per profile, its objective."""
    spec = load_spec(study)
    out.print(f"[bold]{spec.name}[/bold]  ({spec.source})")
    out.print(spec.description)
    if spec.pitfall:
        out.print(f"tests the seed's pitfall {spec.pitfall}")
    out.print(f"objective: {spec.direction} {spec.metric} of the last evaluation; sampler: {spec.sampler}")
    for pname in spec.profiles:
        pspec, prof = spec.for_profile(pname)
        out.print(f"\n[bold]profile {pname}[/bold]: {trial_count(pspec, prof)} trials, {prof.epochs} epochs each"
                  + (f", at most {prof.steps_per_epoch} batches per epoch" if prof.steps_per_epoch else "")
                  + f", seeds {', '.join(map(str, pspec.seeds))}")
        for line in pspec.describe_space():
            out.print(f"  {line}" if line.startswith("config") else f"  sweeps {line}")
        for k, v in pspec.fixed.items():
            out.print(f"  fixed  {k} = {v}")
    if spec.baseline:
        out.print("\nbaseline (the seed's setting): " + ", ".join(f"{k} = {v}" for k, v in spec.baseline.items()))


def default_profile(device: str | None) -> str:
    """full on a GPU (the seed's budget), quick on a CPU."""
    import torch

    if device and device != "auto":
        return "full" if device.startswith("cuda") else "quick"
    return "full" if torch.cuda.is_available() else "quick"


@dataclass(frozen=True)
class RunOptions:
    """What `run` and `worker` were asked for on the command line."""

    study: str
    """Built-in name or .toml path."""
    profile: Optional[str] = None
    """quick or full (None: by device)."""
    trials: Optional[int] = None
    """Most trials to run now."""
    epochs: Optional[int] = None
    """Override of the profile's epochs."""
    seeds: Optional[str] = None
    """Override of the seeds, e.g. '0,1,2'."""
    dataset: Optional[str] = None
    """Override of the data set."""
    device: Optional[str] = None
    """cpu, cuda, cuda:N or auto."""
    storage: str = DEFAULT_STORAGE
    """Optuna storage URL."""
    tracking_uri: str = DEFAULT_TRACKING_URI
    """MLflow tracking URI."""
    study_name: Optional[str] = None
    """Name in storage (default derived from study and profile)."""
    out_dir: Path = Path("reports")
    """Report folder."""
    engine: str = "auto"
    """auto, reference or population."""
    population_size: int = 64
    """Most members per population."""
    checkpoint_dir: Path = Path("checkpoints")
    """Trial checkpoints (shared between workers on a shared disk)."""
    heartbeat: int = 20
    """Seconds between trial heartbeats."""


def resolve(opts: RunOptions):
    """Validate everything a user can get wrong, before any file is written."""
    from gan_core.trainer import resolve_device

    spec = load_spec(opts.study)
    profile_name = opts.profile or default_profile(opts.device)
    if profile_name not in PROFILES:
        raise UserError(f"--profile must be one of {', '.join(PROFILES)}, got {profile_name!r}")
    spec, prof = spec.for_profile(profile_name)
    if opts.epochs is not None:
        if opts.epochs <= 0:
            raise UserError(f"--epochs must be > 0, got {opts.epochs}")
        prof = dataclasses.replace(prof, epochs=opts.epochs)
    if opts.seeds is not None:
        try:
            seed_list = tuple(int(s) for s in opts.seeds.split(","))
        except ValueError:
            raise UserError(f"--seeds must be comma-separated integers like 0,1,2; got {opts.seeds!r}") from None
        if not seed_list or min(seed_list) < 0 or len(set(seed_list)) != len(seed_list):
            raise UserError(f"--seeds must be distinct integers >= 0; got {opts.seeds!r}")
        spec = dataclasses.replace(spec, seeds=seed_list)
    for flag, value, low in (("--trials", opts.trials, 1), ("--population-size", opts.population_size, 1),
                             ("--heartbeat", opts.heartbeat, 1)):
        if value is not None and value < low:
            raise UserError(f"{flag} must be >= {low}, got {value}")
    if opts.engine not in ENGINES:
        raise UserError(f"--engine must be one of {', '.join(ENGINES)}, got {opts.engine!r}")
    overrides = {k: v for k, v in (("dataset", opts.dataset), ("device", opts.device)) if v is not None}
    base = spec.run_config({}, spec.seeds[0], prof, **overrides)  # a bad value fails here
    device = resolve_device(base.device)
    # auto: populations pay off where launches dominate (a GPU); on a CPU arithmetic does.
    engine = opts.engine if opts.engine != "auto" else ("population" if device.type == "cuda" else "reference")
    name = opts.study_name or default_study_name(spec.name, prof.name, opts.dataset, opts.epochs)
    return spec, prof, profile_name, overrides, base, device, engine, name


def execute(opts: RunOptions, create: bool) -> None:
    """`run` (create=True: create or resume the study, enqueue its grid) and `worker` (join an
    existing study) share everything else: they pull trials until none is left."""
    from gan_core.data import load_dataset
    from gan_core.evaluator import Evaluator

    from .runner import Interrupted, RunContext, run_trials
    from .storage import StaleTrials, counts, open_storage, open_study, plan, planning_lock, probe_storage
    from .tracking import Tracker, check_tracking_uri

    spec, prof, profile_name, overrides, base, device, engine, name = resolve(opts)
    data = load_dataset(base.data.dataset, base.data.data_dir)
    evaluator = Evaluator(data, device, log=err.print)  # a broken evaluator fails before any store exists
    probe_storage(opts.storage)  # both stores answer before either is created or written
    check_tracking_uri(opts.tracking_uri, reach=True)
    # Both stores are opened (and created) before any trial: concurrent first-time creation crashes.
    stale = StaleTrials()
    storage = open_storage(opts.storage, heartbeat_s=opts.heartbeat, stale=stale)
    tracker = Tracker(opts.tracking_uri, name, spec.description)
    stale.tracker = tracker
    if create:
        with planning_lock(storage, opts.storage):
            handle = open_study(spec, prof, storage, name, extra={"dataset": base.data.dataset}, url=opts.storage)
            added = plan(handle)
    else:
        handle = open_study(spec, prof, storage, name, create=False, extra={"dataset": base.data.dataset},
                            url=opts.storage)
        added = 0
    err.print(f"study {name!r} ({profile_name} profile, {prof.epochs} epochs per trial, {engine} engine) in "
              f"{opts.storage}; {added} trials enqueued now; data: {data.source}")
    parent = tracker.start_run(f"{name} {'run' if create else 'worker'}",
                               tags={"gan_sweep.kind": "study" if create else "worker", "profile": profile_name,
                                     "engine": engine, "study_source": spec.source})
    planned = trial_count(spec, prof)
    done_before = sum(v for k, v in counts(handle.study).items() if k in ("COMPLETE", "PRUNED"))

    progress = Progress(
        TextColumn("[bold]{task.description}"), MofNCompleteColumn(), BarColumn(bar_width=18),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[line]}"), console=err)
    with progress:
        trials_task = progress.add_task("trials", total=planned, completed=done_before, line="")
        epoch_task = progress.add_task("epoch", total=prof.epochs, line="")

        def on_epoch(ev) -> None:
            progress.update(epoch_task, completed=ev.record.epoch, total=ev.epochs, line=epoch_line(ev))

        def on_trial(number: int, label: str) -> None:
            tally = "  ".join(f"{k} {v}" for k, v in sorted(ctx.outcomes.items()))
            progress.update(trials_task, advance=1, line=f"last: #{number} {label}   {tally}")
            progress.update(epoch_task, completed=0)

        ctx = RunContext(handle, data, evaluator, tracker, parent, overrides, on_epoch, engine=engine,
                         population_size=opts.population_size, checkpoint_dir=opts.checkpoint_dir,
                         heartbeat_s=opts.heartbeat)
        try:
            ran = run_trials(ctx, limit=opts.trials, on_trial=on_trial)
        except KeyboardInterrupt as exc:
            tracker.end(parent, "KILLED", fail_reason="interrupted")
            progress.stop()
            why = str(exc) if isinstance(exc, Interrupted) else "Ctrl-C"
            err.print(f"interrupted ({why}): the trial in hand is marked FAIL (reason: interrupted); "
                      f"run the same command again to finish the missing trials")
            raise typer.Exit(130) from None
    tracker.end(parent, "FINISHED", trials_run=ran, overhead_ratio=f"{ctx.overhead.ratio:.4f}")
    summarize(handle, ctx, ran)
    if create:
        finish_report(name, opts.storage, opts.tracking_uri, opts.out_dir)


def default_study_name(study: str, profile: str, dataset: str | None = None, epochs: int | None = None) -> str:
    """<study>-<profile>[-<dataset>][-e<epochs>]: what `run` names a study in storage and MLflow."""
    parts = [study, profile]
    if dataset:
        parts.append(dataset)
    if epochs:
        parts.append(f"e{epochs}")
    return "-".join(parts)


def summarize(handle, ctx, ran: int) -> None:
    from .storage import counts

    c = counts(handle.study)
    states = ", ".join(f"{k} {c[k]}" for k in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING") if c.get(k))
    labels = ", ".join(f"{k} {v}" for k, v in sorted(c.items()) if k.islower())
    o = ctx.overhead
    out.print(f"ran {ran} trials now; study {handle.name!r}: {states or 'empty'}")
    if labels:
        out.print(f"outcomes: {labels}")
    if ran:
        out.print(f"orchestration overhead: optuna {o.optuna_s:.2f} s + mlflow {o.mlflow_s:.2f} s over "
                  f"{o.train_s:.1f} s of training ({100 * o.ratio:.2f}%)")
    if ctx.outcomes.get("FAIL"):
        out.print(f"[red]{ctx.outcomes['FAIL']} trials failed[/red] (error stored on each trial: user attr 'error')")


def finish_report(name: str, storage_url: str, tracking_uri: str, out_dir: Path) -> None:
    """The report, printed and written, at the end of `run`."""
    from .report import report_study

    report_study(name, storage_url, tracking_uri, out_dir)


def register(app: typer.Typer) -> None:
    app.command("studies", help="List the built-in studies.")(guarded(studies))
    app.command("show", help="Show what a study sweeps, its budget and objective.")(guarded(show))

    common = dict(
        profile=typer.Option(None, help="quick (CPU-sized) or full (the seed's budget); default: full on a GPU, "
                                        "quick on a CPU."),
        trials=typer.Option(None, help="Run at most this many trials now (the rest later)."),
        epochs=typer.Option(None, help="Override the profile's epochs per trial."),
        seeds=typer.Option(None, help="Override the seeds, e.g. 0,1,2,3."),
        dataset=typer.Option(None, help="Override the data set (mnist, mnist-10k, fashion-mnist)."),
        device=typer.Option(None, help="cpu, cuda, cuda:N or auto."),
        storage=typer.Option(DEFAULT_STORAGE, help="Optuna storage URL (sqlite:///file.db or postgresql://...)."),
        tracking_uri=typer.Option(DEFAULT_TRACKING_URI, help="MLflow tracking URI (sqlite:///mlflow.db or http://...)."),
        study_name=typer.Option(None, help="Name in storage (default: <study>-<profile>[-<dataset>][-e<epochs>])."),
        engine=typer.Option("auto", help="auto (population on a GPU, reference on a CPU), reference or population."),
        population_size=typer.Option(64, help="Members per population (population engine)."),
        checkpoint_dir=typer.Option(Path("checkpoints"), help="Trial checkpoints; share it between workers so a "
                                                              "retried trial resumes."),
        heartbeat=typer.Option(20, help="Seconds between trial heartbeats (a trial silent 3x as long is retried)."),
    )

    def make(create: bool):
        def command(
            study: str = typer.Argument(..., help="Built-in study name (see `gan-sweep studies`) or a .toml file."),
            profile: Optional[str] = common["profile"], trials: Optional[int] = common["trials"],
            epochs: Optional[int] = common["epochs"], seeds: Optional[str] = common["seeds"],
            dataset: Optional[str] = common["dataset"], device: Optional[str] = common["device"],
            storage: str = common["storage"], tracking_uri: str = common["tracking_uri"],
            study_name: Optional[str] = common["study_name"],
            out_dir: Path = typer.Option(Path("reports"), "--out", help="Folder for the report."),
            engine: str = common["engine"], population_size: int = common["population_size"],
            checkpoint_dir: Path = common["checkpoint_dir"], heartbeat: int = common["heartbeat"],
        ) -> None:
            execute(RunOptions(study, profile, trials, epochs, seeds, dataset, device, storage, tracking_uri,
                               study_name, out_dir, engine, population_size, checkpoint_dir, heartbeat), create)

        return guarded(command)

    app.command("run", help="Run or resume a study (built-in name or .toml file); a report at the end.")(make(True))
    app.command("worker", help="Join an existing study (e.g. on PostgreSQL) and run its trials until none is "
                               "left.")(make(False))
