"""`gan-sweep run` and `gan-sweep worker`: check every input, then create the stores, then train.

The order is the promise: everything a user can get wrong (study file, every swept configuration
as a full run config, the grid's size, names, output folders, URLs, the data, the evaluator) is
checked before any store, folder or MLflow experiment exists. Once stores exist, every exit path
(a finished run, Ctrl-C twice, SIGTERM, a crash) ends the invocation's MLflow parent run, and a
parent whose process died (kill -9) is closed by the next invocation: its heartbeat went stale.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from . import paths, urls
from .console import err, out
from .defaults import DEFAULT_STORAGE, DEFAULT_TRACKING_URI
from .errors import EXIT_INTERRUPTED, UserError, interrupt_told
from .spec import PROFILES, Profile, StudySpec, load_spec

ENGINES = ("auto", "reference", "population")
POPULATION_GPU = 64
"""Default most members per population on a GPU."""
POPULATION_CPU = 16
"""Default on a CPU: `gan-sweep bench` measures no gain past 16 members on 2 cores."""
MAX_TRIALS = 100_000
"""Most trials a grid study may plan without --allow-large (enqueuing runs at a few hundred per second)."""
MAX_HEARTBEAT_S = 3600
"""A heartbeat slower than an hour would leave a dead worker's trial held for hours (and a huge one
overflows the heartbeat thread's timer)."""


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
    population_size: Optional[int] = None
    """Most members per population (None: 64 on a GPU, 16 on a CPU)."""
    checkpoint_dir: Path = Path("checkpoints")
    """Trial checkpoints (shared between workers on a shared disk)."""
    heartbeat: int = 20
    """Seconds between trial heartbeats (a new study stores it; later workers use the study's)."""
    allow_large: bool = False
    """Allow a grid of more than MAX_TRIALS trials."""


@dataclass(frozen=True)
class Resolved:
    """A run's inputs, all checked."""

    spec: StudySpec
    """The study, profile overrides applied."""
    profile: Profile
    """The budget."""
    overrides: dict[str, Any]
    """Run-config overrides from the command line (dataset, device)."""
    base: Any
    """The run config of the first trial (its data set and device are every trial's)."""
    device: Any
    """The torch device."""
    engine: str
    """reference or population."""
    name: str
    """The study's name in storage and MLflow."""
    max_batch: int
    """The largest batch size of any trial (checked against the data once it is loaded)."""
    planned: int
    """Trials the study plans."""
    population_size: int
    """Most members per population."""


def default_profile(device: str | None) -> str:
    """full on a GPU (the seed's budget), quick on a CPU."""
    import torch

    if device and device != "auto":
        return "full" if device.startswith("cuda") else "quick"
    return "full" if torch.cuda.is_available() else "quick"


def default_study_name(study: str, profile: str, dataset: str | None = None, epochs: int | None = None) -> str:
    """<study>-<profile>[-<dataset>][-e<epochs>]: what `run` names a study in storage and MLflow."""
    parts = [study, profile]
    if dataset:
        parts.append(dataset)
    if epochs:
        parts.append(f"e{epochs}")
    return "-".join(parts)


def trial_count(spec: StudySpec, profile: Profile) -> int:
    return spec.trial_count(profile)


def _seeds(text: str) -> tuple[int, ...]:
    from gan_core.config import MAX_SEED

    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers like 0,1,2; got {text!r}") from None
    if not seeds or min(seeds) < 0 or max(seeds) > MAX_SEED or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds must be distinct integers from 0 to 2^63 - 1; got {text[:80]!r}")
    return seeds


def _every_config(spec: StudySpec, prof: Profile, overrides: dict[str, Any]) -> int:
    """Build every trial's run config (a grid point, or a range's ends) so that a bad swept value is an
    error now, not a FAIL at trial 17; return the largest batch size among them."""
    from gan_core import precision
    from gan_core.config import ConfigError
    from gan_core.trainer import resolve_device

    if spec.sampler == "grid":
        points = spec.grid()
    else:
        points = [{}] + [{p.name: v} for p in spec.space if p.kind != "values" for v in (p.low, p.high)] + \
                 [{p.name: v} for p in spec.space if p.kind == "values" for v in p.values]
    biggest = 0
    devices: dict[str, Any] = {}
    for params in points:
        shown = ", ".join(f"{k} = {v}" for k, v in params.items()) or "the fixed settings"
        if spec.sampler == "grid" and not spec.seeds_for(params):
            raise UserError(f"{spec.source}: the configuration with {shown} names seeds none of which the study "
                            f"runs (seeds {', '.join(map(str, spec.seeds))}): it would plan no trial")
        try:
            cfg = spec.run_config(params, max(spec.seeds), prof, **overrides)
            # a swept precision or dtype must work on the device now, not fail at trial time
            device = devices.setdefault(cfg.device, resolve_device(cfg.device))
            precision.check(cfg.precision, cfg.dtype, device)
        except ConfigError as exc:
            raise UserError(f"{spec.source}: the configuration with {shown}: {exc}") from None
        biggest = max(biggest, cfg.data.batch_size)
    return biggest


def resolve(opts: RunOptions) -> Resolved:
    """Validate everything a user can get wrong that needs no data and no store."""
    from gan_core.population import MAX_MEMBERS
    from gan_core.trainer import resolve_device

    from .storage import check_storage_url, make_sampler
    from .tracking import check_tracking_uri

    spec = load_spec(opts.study)
    profile_name = opts.profile if opts.profile is not None else default_profile(opts.device)  # '' is a typo
    if profile_name not in PROFILES:
        raise UserError(f"--profile must be one of {', '.join(PROFILES)}, got {profile_name!r}")
    spec, prof = spec.for_profile(profile_name)
    if opts.epochs is not None:
        if opts.epochs <= 0:
            raise UserError(f"--epochs must be > 0, got {opts.epochs}")
        prof = dataclasses.replace(prof, epochs=opts.epochs)
    if opts.seeds is not None:
        spec = dataclasses.replace(spec, seeds=_seeds(opts.seeds))
    for flag, value, low, high in (("--trials", opts.trials, 1, MAX_TRIALS),
                                   ("--population-size", opts.population_size, 1, MAX_MEMBERS),
                                   ("--heartbeat", opts.heartbeat, 1, MAX_HEARTBEAT_S)):
        if value is not None and not low <= value <= high:
            raise UserError(f"{flag} must be from {low} to {high:,}, got {value}")
    if opts.engine not in ENGINES:
        raise UserError(f"--engine must be one of {', '.join(ENGINES)}, got {opts.engine!r}")
    planned = trial_count(spec, prof)
    if planned > MAX_TRIALS and not opts.allow_large:
        raise UserError(f"{spec.source} plans {planned:,} trials (more than {MAX_TRIALS:,}); narrow the grid or "
                        f"pass --allow-large")
    overrides = {k: v for k, v in (("dataset", opts.dataset), ("device", opts.device)) if v is not None}
    max_batch = _every_config(spec, prof, overrides)
    base = spec.run_config({}, spec.seeds[0], prof, **overrides)
    device = resolve_device(base.device)
    # auto: populations pay off where launches dominate (a GPU); on a CPU arithmetic does.
    # auto: the population whenever trials can share one (a GPU: launches dominate; a CPU: `gan-sweep bench`
    # measures 1.7-2.4x the reference trainer's member-steps/s at 8-16 members on 2 cores).
    engine = opts.engine if opts.engine != "auto" else ("population" if planned >= 2 else "reference")
    size = opts.population_size or (POPULATION_GPU if device.type == "cuda" else POPULATION_CPU)
    name = paths.check_name(opts.study_name if opts.study_name is not None else default_study_name(spec.name, prof.name, opts.dataset, opts.epochs))
    paths.check_writable_dir(opts.out_dir, "--out")
    paths.under(opts.out_dir, name)
    paths.check_writable_dir(opts.checkpoint_dir, "--checkpoint-dir")
    check_storage_url(opts.storage)
    check_tracking_uri(opts.tracking_uri)
    urls.check_not_swapped(opts.storage, opts.tracking_uri)
    make_sampler(spec)
    return Resolved(spec, prof, overrides, base, device, engine, name, max_batch, planned, size)


@contextlib.contextmanager
def ending(tracker, run_id: str):
    """End the MLflow run however the block ends: FINISHED is the block's own business; an interrupt
    ends it KILLED, an error FAILED, each with any child run its trials left RUNNING. A second Ctrl-C
    during that cleanup is ignored."""
    from .runner import sigint_ignored

    try:
        yield
    except KeyboardInterrupt:
        with sigint_ignored():
            with contextlib.suppress(Exception):  # the parent's end below says what the store says
                tracker.recover()
                tracker.end_children(run_id, "KILLED", fail_reason="interrupted")
            tracker.end(run_id, "KILLED", fail_reason="interrupted")
        raise
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {urls.mask(str(exc))[:300]}"
        with sigint_ignored(), contextlib.suppress(Exception):
            tracker.end_children(run_id, "FAILED", fail_reason=reason)
        with sigint_ignored(), contextlib.suppress(Exception):
            tracker.end(run_id, "FAILED", fail_reason=reason)
        raise


def execute(opts: RunOptions, create: bool) -> None:
    """`run` (create=True: create or resume the study, enqueue its grid) and `worker` (join an
    existing study) share everything else: they pull trials until none is left."""
    from gan_core.data import load_dataset
    from gan_core.evaluator import Evaluator

    from .progress import RunDisplay
    from .runner import Interrupted, RunContext, interrupt_on_sigterm, run_trials
    from .storage import StaleTrials, counts, open_study_for, probe_storage, study_names
    from .tracking import Tracker, probe_tracking

    r = resolve(opts)
    data = load_dataset(r.base.data.dataset, r.base.data.data_dir)
    if r.max_batch > len(data.images):
        raise UserError(f"batch_size {r.max_batch} is larger than the data set ({len(data.images)} images: "
                        f"{data.source})")
    evaluator = Evaluator(data, r.device, log=err.print)  # a broken evaluator fails before any store exists
    probe_storage(opts.storage)  # both stores answer, read-only, before either is created or written
    probe_tracking(opts.tracking_uri, r.name)
    if not create and r.name not in (study_names(opts.storage) or []):
        raise UserError(f"study {r.name!r} does not exist in {urls.mask(opts.storage)}; start it with gan-sweep run")

    try:
        with interrupt_on_sigterm():
            stale = StaleTrials()
            handle, added = open_study_for(r, opts, create, stale, log=err.print)
            tracker = Tracker(opts.tracking_uri, r.name, r.spec.description)
            stale.tracker = tracker
            heartbeat_s = handle.heartbeat_s
            closed = tracker.close_dead_parents(3 * heartbeat_s)
            if closed:
                err.print(f"closed {closed} MLflow run(s) of invocations that died (heartbeat stale) or left a trial open")
            if heartbeat_s != opts.heartbeat:
                err.print(f"heartbeat: {heartbeat_s} s, the study's own (--heartbeat {opts.heartbeat} applies to new "
                          f"studies only)")
            err.print(f"study {r.name!r} ({r.profile.name} profile, {r.profile.epochs} epochs per trial, {r.engine} "
                      f"engine) in {urls.mask(opts.storage)}; {added} trials enqueued now; data: {data.source}")
            started = time.perf_counter()
            parent = tracker.start_run(f"{r.name} {'run' if create else 'worker'} {time.strftime('%Y-%m-%d %H:%M:%S')}",
                                       tags={"gan_sweep.kind": "study" if create else "worker",
                                             "profile": r.profile.name, "engine": r.engine,
                                             "study_source": r.spec.source})
            with ending(tracker, parent), tracker.parent_heartbeat(parent, heartbeat_s):
                display = RunDisplay(handle, r.planned, r.profile.epochs)
                ctx = RunContext(handle, data, evaluator, tracker, parent, r.overrides, display.on_epoch,
                                 engine=r.engine, population_size=r.population_size,
                                 checkpoint_dir=opts.checkpoint_dir, heartbeat_s=heartbeat_s, log=display.say)
                with display:
                    ran = run_trials(ctx, limit=opts.trials, on_trial=display.on_trial, on_start=display.on_start)
                summarize(handle, ctx, ran)
                files = None
                if create:
                    from .report import report_study

                    files = report_study(r.name, opts.storage, opts.tracking_uri, opts.out_dir)
                tracker.log_summary(parent, counts(handle.study), time.perf_counter() - started, ctx.overhead.ratio,
                                    {k: files[k] for k in ("html", "csv")} if files else None)
                tracker.end(parent, "FINISHED", trials_run=ran)
    except KeyboardInterrupt as exc:
        why = str(exc) if isinstance(exc, Interrupted) else "Ctrl-C"
        err.print(f"interrupted ({why}): a trial in hand is marked FAIL (reason: interrupted); run the same "
                  f"command again to finish the missing trials")
        interrupt_told(told=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None


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


def register(app: typer.Typer) -> None:
    from .errors import guarded

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
        engine=typer.Option("auto", help="auto (the population engine when a study has 2 or more trials), "
                                         "reference or population."),
        population_size=typer.Option(None, help=f"Most members per population (default {POPULATION_GPU} on a GPU, "
                                                f"{POPULATION_CPU} on a CPU, where larger ones are no faster)."),
        checkpoint_dir=typer.Option(Path("checkpoints"), help="Trial checkpoints; share it between workers so a "
                                                              "retried trial resumes."),
        heartbeat=typer.Option(20, help="Seconds between trial heartbeats for a new study (a trial silent 3x as "
                                        "long is retried); a study keeps the interval it was created with."),
        allow_large=typer.Option(False, "--allow-large", help=f"Allow a grid of more than {MAX_TRIALS:,} trials."),
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
            engine: str = common["engine"], population_size: Optional[int] = common["population_size"],
            checkpoint_dir: Path = common["checkpoint_dir"], heartbeat: int = common["heartbeat"],
            allow_large: bool = common["allow_large"],
        ) -> None:
            execute(RunOptions(study, profile, trials, epochs, seeds, dataset, device, storage, tracking_uri,
                               study_name, out_dir, engine, population_size, checkpoint_dir, heartbeat,
                               allow_large), create)

        return guarded(command)

    app.command("run", help="Run or resume a study (built-in name or .toml file); a report at the end.")(make(True))
    app.command("worker", help="Join an existing study (e.g. on PostgreSQL) and run its trials until none is "
                               "left.")(make(False))
