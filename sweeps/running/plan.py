"""What an invocation of `run`, `worker` or `atlas --run` will do, checked before any store exists: the
options a user gave, resolved into a study, a profile, a device, an engine and a name (no store, no print)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from sweeps import paths, urls
from sweeps.errors import UserError
from sweeps.study.defaults import DEFAULT_STORAGE, DEFAULT_TRACKING_URI
from sweeps.study.spec import PROFILES, Profile, StudySpec, load_spec

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
    by_memory: tuple[Any, ...]
    """One trial config per distinct setting of what memory depends on (checked once the data set's size
    is known: the largest decides)."""
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


def _heaviest_corner(spec: StudySpec, prof: Profile, overrides: dict[str, Any]) -> dict[str, Any]:
    """A sampler may draw every key memory depends on at its most demanding value at once: that corner
    (each such key's value that alone needs the most memory)."""
    from gan_core import memory

    corner = {}
    for p in spec.space:
        if p.name in memory.KEYS:
            options = p.values if p.kind == "values" else (p.low, p.high)
            corner[p.name] = max(options, key=lambda v: memory.estimate(
                spec.run_config({p.name: v}, max(spec.seeds), prof, **overrides)).total)
    return corner


def _every_config(spec: StudySpec, prof: Profile, overrides: dict[str, Any]) -> tuple[int, tuple[Any, ...]]:
    """Build every trial's run config (a grid point, or a range's ends and the corner of the heaviest
    values) so that a bad swept value is an error now, not a FAIL at trial 17; return the largest batch size
    among them and one config per distinct setting of what memory depends on."""
    from gan_core import memory, precision
    from gan_core.config import ConfigError
    from gan_core.device import resolve_device

    if spec.sampler == "grid":
        points = spec.grid()
    else:
        points = [{}] + [{p.name: v} for p in spec.space if p.kind != "values" for v in (p.low, p.high)] + \
                 [{p.name: v} for p in spec.space if p.kind == "values" for v in p.values]
    biggest, by_memory = 0, {}
    devices: dict[str, Any] = {}
    if spec.sampler != "grid":
        try:
            points.append(_heaviest_corner(spec, prof, overrides))
        except ConfigError:
            pass  # a bad value is named below, by the point that holds it
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
        flat = cfg.to_flat()
        by_memory.setdefault(tuple(flat[k] for k in memory.KEYS), cfg)
    return biggest, tuple(by_memory.values())


def resolve(opts: RunOptions) -> Resolved:
    """Validate everything a user can get wrong that needs no data and no store."""
    # the stores' URL forms first: a typo is answered before torch and optuna load (seconds)
    urls.check_storage(opts.storage)
    urls.check_tracking(opts.tracking_uri)
    urls.check_not_swapped(opts.storage, opts.tracking_uri)
    from gan_core.device import resolve_device
    from gan_core.population import MAX_MEMBERS
    from sweeps.stores.storage import make_pruner, make_sampler
    from sweeps.study.spec import check_pruner_budget

    spec = load_spec(opts.study)
    profile_name = opts.profile if opts.profile is not None else default_profile(opts.device)  # '' is a typo
    if profile_name not in PROFILES:
        raise UserError(f"--profile must be one of {', '.join(PROFILES)}, got {profile_name!r}")
    spec, prof = spec.for_profile(profile_name)
    if opts.epochs is not None:
        if opts.epochs <= 0:
            raise UserError(f"--epochs must be > 0, got {opts.epochs}")
        prof = dataclasses.replace(prof, epochs=opts.epochs)
        if spec.pruner is not None:
            check_pruner_budget(spec.source, spec.pruner, prof.epochs, f"--epochs {opts.epochs}")
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
    max_batch, by_memory = _every_config(spec, prof, overrides)
    base = spec.run_config({}, spec.seeds[0], prof, **overrides)
    device = resolve_device(base.device)
    # auto: the population whenever trials can share one (a GPU: launches dominate; a CPU: `gan-sweep bench`
    # measures 1.7-2.4x the reference trainer's member-steps/s at 8-16 members on 2 cores).
    engine = opts.engine if opts.engine != "auto" else ("population" if planned >= 2 else "reference")
    size = opts.population_size or (POPULATION_GPU if device.type == "cuda" else POPULATION_CPU)
    name = paths.check_name(opts.study_name if opts.study_name is not None else default_study_name(spec.name, prof.name, opts.dataset, opts.epochs))
    paths.check_writable_dir(opts.out_dir, "--out")  # every place the run writes, before any store exists
    paths.under(opts.out_dir, name)
    paths.check_writable_dir(opts.out_dir / name, "--out", inside=paths.REPORT_FOLDERS)
    paths.check_writable_dir(opts.checkpoint_dir, "--checkpoint-dir")
    make_sampler(spec)
    try:  # Optuna's own checks of its pruner's parameters, should one pass ours: one line, before any store
        make_pruner(spec.pruner, prof)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{spec.source}: pruner: {exc}") from None
    return Resolved(spec, prof, overrides, base, device, engine, name, max_batch, by_memory, planned, size)


