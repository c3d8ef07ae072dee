"""Optuna storage and study handling: open or resume a study, plan its trials, pop work.

Grids are enqueued trial by trial (never GridSampler, which can run a point twice across
workers) and every worker takes work with `pop_waiting`, which claims a WAITING trial through
the storage's own state transition (WAITING -> RUNNING succeeds for exactly one worker; on
PostgreSQL it runs under a row lock). Sampled studies (tpe, random, gp, cmaes, qmc) ask under the
study's planning lock with the sampler seeded by the study's seed and the trial's number, so that
concurrent runs and workers never ask the same configuration twice (`ask_sampled`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import time
import warnings
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from sweeps import urls
from sweeps.errors import UserError
from sweeps.stores import deadline
from sweeps.stores import ends
from sweeps.stores.beats import beating
from sweeps.stores.locks import check_lock_paths, sqlite_lock
from sweeps.study.pruners import PrunerSpec
from sweeps.study.spec import Profile, StudySpec

DONE = (TrialState.COMPLETE, TrialState.PRUNED)
PENDING = (TrialState.WAITING, TrialState.RUNNING)
HEARTBEAT_S = 20
"""Seconds between a running trial's heartbeats; a trial silent for 3x this is stale."""
MAX_RETRY = 3
"""A configuration whose trial died (stale heartbeat) is retried at most this often."""

optuna.logging.set_verbosity(optuna.logging.WARNING)
# Heartbeats and fail_stale_trials are marked experimental; they are what scale-out rests on.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class StaleTrials:
    """Optuna's callback for a trial whose worker died (its heartbeat went stale): record why, end
    its MLflow run as FAILED (nobody else will), and enqueue a retry with the same parameters and
    seed, which resumes from the dead trial's checkpoint."""

    def __init__(self) -> None:
        self.tracker = None  # set once the MLflow tracker is open
        # a retry inherits the dead trial's system attributes, successive halving's rungs among them; the
        # epochs its checkpoint restores are reported to it again when it resumes (runner.TrialPruning)
        self.retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        study.set_user_attr(f"stale_trial_{trial.number}", time.strftime("%Y-%m-%d %H:%M:%S"))
        run_id = trial.user_attrs.get("mlflow_run_id")
        if self.tracker is not None and run_id:
            with contextlib.suppress(Exception):  # the retry matters more than the tag
                self.tracker.end(run_id, "FAILED", fail_reason="worker died (heartbeat stale)")
        self.retry(study, trial)


def probe_storage(url: str) -> None:
    """Check a storage URL without creating anything (a one-line UserError if it cannot work):
    its form, for a sqlite file its locks' places, and for a server that it answers."""
    urls.check_storage(url)
    if urls.sqlite_path(url) is not None:
        check_lock_paths(url)
        return
    import sqlalchemy

    deadline.install_sql(url)
    try:
        engine = sqlalchemy.create_engine(url, connect_args=deadline.connect_args(url))
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure: the URL does not work from here
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot reach storage {urls.mask(url)}: {urls.mask(first, url)[:300]}") from None


def study_names(url: str) -> list[str] | None:
    """The study names in a store, read without creating anything (None: no gan-sweep/Optuna store there)."""
    path = urls.sqlite_path(url)
    if path is not None and not path.is_file():
        return None
    import sqlalchemy

    if path is None:
        deadline.install_sql(url)
    engine = sqlalchemy.create_engine(f"sqlite:///file:{path.resolve()}?mode=ro&uri=true" if path else url,
                                      connect_args={} if path else deadline.connect_args(url))
    try:
        with engine.connect() as conn:
            if "studies" not in sqlalchemy.inspect(conn).get_table_names():
                return None
            return [r[0] for r in conn.execute(sqlalchemy.text("SELECT study_name FROM studies"))]
    except Exception as exc:  # noqa: BLE001
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot read storage {urls.mask(url)}: {urls.mask(first, url)[:300]}") from None
    finally:
        engine.dispose()


def open_storage(url: str, heartbeat: bool = True, heartbeat_s: int = HEARTBEAT_S,
                 stale: StaleTrials | None = None) -> optuna.storages.RDBStorage:
    """An RDB storage (sqlite or PostgreSQL); with heartbeats, so a dead worker's trial can be
    found stale, failed and retried. Any error opening it is the user's URL: one line."""
    urls.check_storage(url)
    kwargs: dict[str, Any] = {}
    if heartbeat:
        kwargs.update(heartbeat_interval=heartbeat_s, grace_period=3 * heartbeat_s,
                      heartbeat_stale_trial_callback=stale or StaleTrials())
    if urls.sqlite_path(url) is None:
        deadline.install_sql(url)
    engine = {"connect_args": deadline.connect_args(url)}
    for attempt in range(6):
        try:
            with sqlite_lock(url, "schema"):
                return optuna.storages.RDBStorage(url, engine_kwargs=engine, **kwargs)
        except Exception as exc:  # noqa: BLE001 - sqlalchemy/driver errors all mean: this URL does not work
            text = str(exc)
            # Two workers creating the schema at once: the loser sees "already exists"; try again.
            if attempt < 5 and any(w in text for w in ("already exists", "UniqueViolation", "duplicate key",
                                                       "database is locked")):
                time.sleep(0.3 * (attempt + 1))
                continue
            first = (text.strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"cannot open storage {urls.mask(url)}: {urls.mask(first, url)[:300]}") from None
    raise AssertionError("unreachable")


@contextlib.contextmanager
def planning_lock(storage: optuna.storages.RDBStorage, url: str):
    """One planner at a time: two `run`s started together must not both enqueue the grid.
    PostgreSQL: an advisory lock; sqlite: a file lock beside the database."""
    key = zlib.crc32(b"gan-sweep-plan")
    if url.startswith("postgresql"):
        from sqlalchemy import text

        what = f"the Optuna store {urls.mask(url)}"
        with storage.engine.connect() as conn:  # held for the whole plan; each statement is timed
            while True:  # try and wait, not a blocking lock: a frozen server must not hold us past the deadline
                with deadline.timed(what):
                    got = conn.execute(text(f"SELECT pg_try_advisory_lock({key})")).scalar()
                    conn.commit()
                if got:
                    break
                time.sleep(0.2)
            try:
                yield
            finally:
                with deadline.timed(what):
                    conn.execute(text(f"SELECT pg_advisory_unlock({key})"))
                    conn.commit()
    else:
        with sqlite_lock(url, "plan"):
            yield


@contextlib.contextmanager
def heartbeat(storage: optuna.storages.BaseStorage, trial_ids: list[int], interval: float):
    """Record the trials' heartbeats every `interval` seconds while the block runs (Optuna does
    this only inside `optimize`; ask-and-tell and the population engine must do it themselves)."""
    if not isinstance(storage, optuna.storages.RDBStorage) or storage.get_heartbeat_interval() is None:
        yield
        return

    def stamp() -> None:
        for tid in trial_ids:
            with contextlib.suppress(Exception):  # one trial's missed beat does not skip the others
                storage.record_heartbeat(tid)

    with beating(stamp, interval, "gan-sweep-heartbeat"):
        yield


def recover(storage: optuna.storages.BaseStorage) -> None:
    """Drop the store's connections after an interrupt: a KeyboardInterrupt that lands inside a commit
    leaves its connection holding the transaction (sqlite: the write lock, so this very process then
    waits on "database is locked"), and the records the interrupt must close go through fresh ones."""
    backend = getattr(storage, "_backend", storage)  # optuna wraps an RDBStorage in a cache
    if isinstance(backend, optuna.storages.RDBStorage):
        backend.scoped_session.remove()
        backend.engine.dispose()


def fail_stale(study: optuna.Study) -> None:
    """Fail trials whose worker died, which retries them (see StaleTrials)."""
    with contextlib.suppress(Exception):
        optuna.storages.fail_stale_trials(study)


def checkpoint_name(config_flat: dict[str, Any]) -> str:
    """A trial's checkpoint file name: a hash of its config (seed included, device excluded), so a
    retry of the same configuration finds it and no other trial does."""
    key = {k: v for k, v in config_flat.items() if k != "device"}
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20] + ".pt"


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the code that ran (recorded on every trial)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(__file__).parent,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def make_sampler(spec: StudySpec, salt: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded from the study's seed; `salt` (the number of the trial about to be asked)
    varies that seed, so that the seed and the trial's number, not the process that asks, decide what is
    sampled: two processes asking in turn (under the planning lock) never draw alike. QMC is the exception:
    its points are one scrambled sequence, which the study's seed alone must fix; each trial takes the next
    index of it, counted in the study's storage (under the same lock: no index is taken twice)."""
    # hashed, not added: Mersenne Twister streams of consecutive seeds start correlated (a study's lr_g came out
    # rising with the trial's number)
    seed = int(np.random.SeedSequence([spec.sampler_seed, salt]).generate_state(1)[0])
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if spec.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if spec.sampler == "cmaes":
        try:
            import cmaes  # noqa: F401 - a dependency; a broken install is said in one line, before any store
        except ImportError:
            raise UserError("the cmaes sampler needs the cmaes package: pip install cmaes") from None
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if spec.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=spec.sampler_seed, scramble=True, warn_independent_sampling=False)
    # grid: every trial is enqueued, the sampler is never asked; random: as asked.
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(pruner: PrunerSpec | None, profile: Profile) -> optuna.pruners.BasePruner:
    """The study's pruner, one of Optuna's, built from its file's parameters ("auto" resources resolved from
    the profile's epochs: every process builds the same one, before any trial has completed); none: NopPruner."""
    if pruner is None:
        return optuna.pruners.NopPruner()
    from sweeps.study.pruners import PRUNERS

    cls = getattr(optuna.pruners, PRUNERS[pruner.kind].optuna)
    kwargs = pruner.resolved(profile.epochs)
    if pruner.kind == "patient":
        return cls(make_pruner(pruner.wrapped, profile) if pruner.wrapped is not None else None, **kwargs)
    return cls(**kwargs)


def ask_sampled(handle: StudyHandle) -> optuna.Trial | None:
    """A sampled study (tpe, random, gp, cmaes, qmc): a newly sampled configuration with all its parameters, or
    None once the design has its `trials` configurations. Counted, asked and suggested under the study's
    planning lock with the sampler seeded by the trial's number: two processes can neither both ask the last
    configuration nor (seeded alike) both draw the same one; one process alone draws the same sequence every
    time."""
    study = handle.study
    with planning_lock(handle.storage, handle.url):
        if sampled_trials(study) >= (handle.profile.trials or 0):
            return None
        study.sampler = make_sampler(handle.spec, salt=len(study.get_trials(deepcopy=False)))
        # ask() claims a WAITING trial (another configuration's seed) before it samples one, through the same
        # WAITING -> RUNNING step as pop_waiting: on sqlite only the claim lock keeps two processes from both
        # taking it. Two warnings say nothing here: scipy's, that a Sobol sequence is balanced at powers of two only
        # (each trial takes one point), and Optuna's, that heartbeats belong to Study.optimize (ours beat them).
        with sqlite_lock(handle.url, "claim"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*balance properties of Sobol")
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
            trial = study.ask()
            if "seed" not in trial.user_attrs:
                for p in handle.spec.space:  # every parameter now, under the lock (GP, CMA-ES and QMC sample
                    p.suggest(trial)         # them all at once, when the first is asked)
        study_id = handle.storage.get_study_id_from_name(handle.name)
        beat_now(handle.storage, handle.storage.get_trial_id_from_study_id_trial_number(study_id, trial.number))
        if "seed" in trial.user_attrs:  # ask() hands out an enqueued trial first (another's seeds): run it as is
            return trial
        trial.set_user_attr("seed", handle.spec.seeds[0])
        trial.set_user_attr("sampled", True)
        enqueue_missing_seeds(handle)  # its other seeds, under the same lock: no other process enqueues them too
    return trial


@dataclass(frozen=True)
class StudyHandle:
    """An opened study and what it was opened for."""

    study: optuna.Study
    """The Optuna study."""
    storage: optuna.storages.BaseStorage
    """Its storage."""
    spec: StudySpec
    """The study spec (profile overrides applied)."""
    profile: Profile
    """The budget."""
    name: str
    """The study's name in storage (and MLflow's experiment)."""
    url: str = ""
    """The storage URL (a sqlite one needs a file lock to claim trials)."""
    heartbeat_s: int = HEARTBEAT_S
    """The study's heartbeat interval (stored with it: every worker must use the same one)."""


def open_study(spec: StudySpec, profile: Profile, storage: optuna.storages.BaseStorage, name: str,
               create: bool = True, extra: dict[str, Any] | None = None, url: str = "",
               heartbeat_s: int = HEARTBEAT_S) -> StudyHandle:
    """Create the study once or resume it. A study of that name with another space, budget or
    direction, or one that gan-sweep did not make, is an error."""
    fingerprint = spec.fingerprint(profile, extra)
    made = False
    sampler, pruner = make_sampler(spec), make_pruner(spec.pruner, profile)
    if create:
        try:
            study = optuna.create_study(storage=storage, study_name=name, direction=spec.direction,
                                        sampler=sampler, pruner=pruner)
            made = True
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    else:
        try:
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        except KeyError:
            raise UserError(f"study {name!r} does not exist in this storage; start it with gan-sweep run") from None
    if made:  # under the planning lock, so no other process sees the study before these attributes
        study.set_metric_names([spec.metric])  # optuna-dashboard names the objective, not "Objective 0"
        study.set_user_attr("fingerprint", fingerprint)
        study.set_user_attr("heartbeat_s", heartbeat_s)
        study.set_user_attr("spec", {"source": spec.source, "description": spec.description,
                                     "profile": profile.name, "metric": spec.metric,
                                     "space": spec.describe_space(), "seeds": list(spec.seeds),
                                     "claims": list(spec.claims), "baseline": spec.baseline, "fixed": spec.fixed,
                                     "sampler": spec.sampler, "epochs": profile.epochs,
                                     "pruner": spec.pruner.describe(profile.epochs) if spec.pruner else None})
    attrs = study.user_attrs
    if "fingerprint" not in attrs:
        raise UserError(f"a study named {name!r} already exists in this storage but was not made by gan-sweep; "
                        f"use --study-name to pick another name")
    if attrs["fingerprint"] != fingerprint:
        raise UserError(f"study {name!r} already exists in this storage with a different search space, budget, "
                        f"objective or data layout (fingerprint {attrs['fingerprint']} vs {fingerprint}); use "
                        f"--study-name to start a new one")
    return StudyHandle(study, storage, spec, profile, name, url, int(attrs.get("heartbeat_s", HEARTBEAT_S)))


def open_study_for(r, opts, create: bool, stale: StaleTrials, log=None) -> tuple[StudyHandle, int]:
    """Open the storage and the study of a resolved run (`gan-sweep run` plans its grid; a worker only
    joins). The storage's heartbeat is the study's own: reopened when this process asked for another."""
    extra = {"dataset": r.base.data.dataset}
    storage = open_storage(opts.storage, heartbeat_s=opts.heartbeat, stale=stale)
    with planning_lock(storage, opts.storage) if create else contextlib.nullcontext():
        handle = open_study(r.spec, r.profile, storage, r.name, create=create, extra=extra, url=opts.storage,
                            heartbeat_s=opts.heartbeat)
        if handle.heartbeat_s != opts.heartbeat:
            storage = open_storage(opts.storage, heartbeat_s=handle.heartbeat_s, stale=stale)
            handle = open_study(r.spec, r.profile, storage, r.name, create=False, extra=extra, url=opts.storage)
        added = plan(handle, log) if create else 0
    return handle, added


def _key(params: dict[str, Any], seed: Any) -> str:
    return json.dumps([sorted(params.items()), seed], default=str)


def trial_key(t: optuna.trial.FrozenTrial) -> str:
    params = t.params or t.system_attrs.get("fixed_params", {})
    return _key(params, t.user_attrs.get("seed"))


PLAN_REPORT_EVERY = 2000
"""While enqueuing a large grid, say how far it got every this many trials."""


def plan(handle: StudyHandle, log=None) -> int:
    """Enqueue the grid points (x seeds) that are neither done nor pending; return how many.

    Seed-major order, configurations balanced within a seed: any prefix of the queue covers every
    level of every swept key as evenly as it can, so a partial run (`--trials N`) compares arms."""
    spec, study = handle.spec, handle.study
    if spec.sampler != "grid":
        return enqueue_missing_seeds(handle)
    have = {trial_key(t) for t in study.get_trials(deepcopy=False, states=DONE + PENDING)}
    added, total = 0, spec.trial_count(handle.profile)
    t0 = time.perf_counter()
    for seed in spec.seeds:
        for params in spec.balanced_grid():
            if seed in spec.seeds_for(params) and _key(params, seed) not in have:
                study.enqueue_trial(params, user_attrs={"seed": seed})
                added += 1
                if log and added % PLAN_REPORT_EVERY == 0:
                    rate = added / (time.perf_counter() - t0)
                    log(f"enqueued {added:,} of up to {total:,} trials ({rate:.0f}/s)")
    return added


def enqueue_missing_seeds(handle: StudyHandle) -> int:
    """A sampled study: every sampled configuration runs once per seed; failed ones run again."""
    study, seeds = handle.study, handle.spec.seeds
    trials = study.get_trials(deepcopy=False)
    have = {trial_key(t) for t in trials if t.state in DONE + PENDING}
    added = 0
    configs = {json.dumps(sorted(t.params.items()), default=str): t.params for t in trials if t.params}
    for params in configs.values():
        for seed in seeds:
            if _key(params, seed) not in have:
                study.enqueue_trial(params, user_attrs={"seed": seed})
                have.add(_key(params, seed))
                added += 1
    return added


def sampled_trials(study: optuna.Study) -> int:
    """A sampled study: configurations sampled so far (failed ones included; a random draw may repeat one in
    a small discrete space, as any random search does: a grid runs each exactly once)."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get("sampled"))


def pop_waiting(handle: StudyHandle) -> optuna.Trial | None:
    """Claim one enqueued trial; None when there is none left. Safe with many workers: on
    PostgreSQL the WAITING -> RUNNING update runs under a row lock; sqlite has none (two
    processes can both read WAITING and both write RUNNING), so there a file lock serialises it."""
    storage = handle.storage
    study_id = storage.get_study_id_from_name(handle.name)
    with sqlite_lock(handle.url, "claim"):
        # Read through the study, not the raw storage: that refreshes the study's own trial cache,
        # which must know a trial that another process enqueued before optuna.Trial can use it.
        for t in handle.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            try:
                claimed = storage.set_trial_state_values(trial_id, state=TrialState.RUNNING)
            except Exception:  # noqa: BLE001 - lost a race on a storage without row locks: try the next
                continue
            if claimed:
                beat_now(storage, trial_id)
                return optuna.Trial(handle.study, trial_id)
    return None


def beat_now(storage: optuna.storages.BaseStorage, trial_id: int) -> None:
    """A first heartbeat the moment a trial is claimed: a worker killed before its heartbeat thread
    starts must still leave a trial that goes stale (one that never beat would never be retried)."""
    if isinstance(storage, optuna.storages.RDBStorage) and storage.get_heartbeat_interval() is not None:
        with contextlib.suppress(Exception):
            storage.record_heartbeat(trial_id)


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state, per outcome among the finished, and (ends.COUNT_KEY) how many the pruner stopped."""
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
        if t.state in DONE:
            by = ends.ended_by(t.user_attrs, True)
            label = ends.COUNT_KEY if by == ends.PRUNER else t.user_attrs.get("outcome", "?")
            out[label] = out.get(label, 0) + 1
    return out


def stored_with_other_budget(r, url: str) -> bool:
    """Whether storage already holds a study of r's name made with another space, budget or objective
    (read only; `run` would refuse it, so `atlas --run` says so before it runs anything)."""
    names = study_names(url) or []
    if r.name not in names:
        return False
    study = optuna.load_study(study_name=r.name, storage=open_storage(url, heartbeat=False))
    stored = study.user_attrs.get("fingerprint")
    return stored is not None and stored != r.spec.fingerprint(r.profile, {"dataset": r.base.data.dataset})
