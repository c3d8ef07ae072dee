"""Running a study: trials from Optuna, training by gan_core, tracking in MLflow.

Trial states: a normal end is COMPLETE with the objective; a run whose fate was sealed early
(diverged, d_overpowered, stalled, hung) is stopped and PRUNED, its outcome kept; a run the
study's pruner stopped is PRUNED too, with no outcome (`ended_by` tells the two apart:
sweeps/stores/ends.py); an exception in our code is FAIL with the error stored; Ctrl-C (or
SIGTERM) marks the trial in hand FAIL with reason "interrupted", ends its MLflow run as KILLED,
and the next `run` finishes exactly the missing trials.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from gan_core.data import Dataset
from gan_core.device import resolve_device
from gan_core.judge.evaluator import Evaluator
from gan_core.population import PopulationTrainer, split_into_populations
from gan_core.records import EpochEvent, RunResult, trial_attributes
from gan_core.trainer import Trainer
from sweeps import signals, urls
from sweeps.running.pruning import TrialPruning
from sweeps.stores import ends
from sweeps.stores.storage import (
    HEARTBEAT_S,
    StudyHandle,
    ask_sampled,
    checkpoint_name,
    fail_stale,
    git_commit,
    heartbeat,
    pop_waiting,
)
from sweeps.stores.storage import recover as storage_recover
from sweeps.stores.tracking import Tracker


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: stop after closing the trial in hand."""


@dataclass
class Overhead:
    """Seconds spent training vs. in Optuna and MLflow calls, to show what orchestration costs."""

    train_s: float = 0.0
    """Time inside the trainer, minus its callbacks' tracking calls."""
    optuna_s: float = 0.0
    """Time in Optuna calls (ask, report, tell, attributes)."""
    mlflow_s: float = 0.0
    """Time in MLflow calls (runs, params, metrics, images, figures)."""

    @property
    def ratio(self) -> float:
        return (self.optuna_s + self.mlflow_s) / self.train_s if self.train_s else math.nan


@dataclass
class RunContext:
    """What every trial of one invocation shares."""

    handle: StudyHandle
    """The opened study."""
    dataset: Dataset
    """The data, loaded once."""
    evaluator: Evaluator
    """The quality evaluator, loaded once."""
    tracker: Tracker
    """MLflow."""
    parent_run: str
    """This invocation's parent MLflow run."""
    overrides: dict[str, Any]
    """Run-config overrides from the command line (dataset, device; --epochs changes the profile)."""
    on_epoch: Callable[[int, EpochEvent], None] | None = None
    """Progress display."""
    overhead: Overhead = field(default_factory=Overhead)
    """Orchestration cost so far."""
    outcomes: Counter = field(default_factory=Counter)
    """Outcome labels of this invocation's trials."""
    engine: str = "reference"
    """reference (one trial at a time) or population."""
    population_size: int = 64
    """Most members per population."""
    checkpoint_dir: Path | None = None
    """Where trials checkpoint (shared between workers, so a retry resumes); None: no checkpoints."""
    checkpoint_every: int = 2
    """Epochs between checkpoints."""
    heartbeat_s: int = HEARTBEAT_S
    """Seconds between heartbeats of running trials."""
    on_start: Callable[[Prepared], None] | None = None
    """Told when a trial starts training (progress lines)."""
    log: Callable[[str], None] | None = None
    """Where warnings go (e.g. a checkpoint that could not be used)."""
    final_fld: dict[int, float] = field(default_factory=dict)
    """Trial number -> its final FLD, for this invocation's trials (progress lines)."""
    unrecorded: set[str] = field(default_factory=set)
    """Stores that could not take a trial's end (said once each in the log)."""
    on_pruned: Callable[[int, int], None] | None = None
    """Told when the study's pruner stops a trial (its number, the epoch), the moment it is recorded."""


class _timed:
    """Add the wall time of a block to an Overhead field."""

    def __init__(self, overhead: Overhead, name: str) -> None:
        self.o, self.name = overhead, name

    def __enter__(self) -> None:
        self.t = time.perf_counter()

    def __exit__(self, *exc) -> None:
        setattr(self.o, self.name, getattr(self.o, self.name) + time.perf_counter() - self.t)


def next_trial(ctx: RunContext, wait: bool = True) -> optuna.Trial | None:
    """The next trial to run: an enqueued one, else (a sampled study) a newly sampled configuration.

    With `wait`, and while another worker's trials are still running, keep looking: such a trial
    may die, go stale and come back as a retry. None means the study is done."""
    h = ctx.handle
    while True:
        with _timed(ctx.overhead, "optuna_s"):
            fail_stale(h.study)  # a dead worker's trial becomes FAIL and is enqueued again
            trial = pop_waiting(h)
            if trial is not None:
                return trial
            if h.spec.sampler != "grid":
                trial = ask_sampled(h)
                if trial is not None:
                    return trial
            running = h.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not wait or not running:
            return None
        time.sleep(min(ctx.heartbeat_s, 5))


@dataclass
class Prepared:
    """A trial ready to train: its config, MLflow child run and checkpoint file."""

    trial: optuna.Trial
    cfg: Any
    params: dict[str, Any]
    child: str | None = None
    checkpoint: Any = None
    recorded: str | None = None
    """Its label once recorded in both stores (a pruned trial is, at its epoch's end, before its population's)."""


def prepare(ctx: RunContext, trial: optuna.Trial) -> Prepared:
    """Read a trial's parameters and seed, and open its MLflow child run."""
    h, o = ctx.handle, ctx.overhead
    with _timed(o, "optuna_s"):
        params = {p.name: p.suggest(trial) for p in h.spec.space}
        seed = trial.user_attrs.get("seed", h.spec.seeds[0])
        trial.set_user_attr("git_commit", git_commit())
    prep = Prepared(trial, None, params)
    prep.cfg = h.spec.run_config(params, seed, h.profile, **ctx.overrides)
    # What actually runs: the resolved device and the data that was found, not "auto" and "mnist".
    ran = prep.cfg.to_flat() | {"device": str(resolve_device(prep.cfg.device)), "data_source": ctx.dataset.source}
    with _timed(o, "mlflow_s"):
        prep.child = ctx.tracker.start_run(
            run_name(params, seed), parent=ctx.parent_run, params=ran,
            tags={"optuna_trial": trial.number, "optuna_study": h.name, "seed": seed, "git_commit": git_commit(),
                  **{f"swept.{k}": v for k, v in params.items()}})
    with _timed(o, "optuna_s"):
        trial.set_user_attr("mlflow_run_id", prep.child)
    if ctx.checkpoint_dir is not None:
        prep.checkpoint = ctx.checkpoint_dir / checkpoint_name(prep.cfg.to_flat())
    if ctx.on_start:
        ctx.on_start(prep)
    return prep


def run_name(params: dict[str, Any], seed: int) -> str:
    """A child run's name: its swept values and seed, e.g. `clamp=none lr_d=0.02 s0`."""
    return " ".join(f"{k}={v}" for k, v in params.items()) + f" s{seed}"


def observer(ctx: RunContext, prep: Prepared, pruning: TrialPruning | None = None,
             member: int = 0) -> Callable[[EpochEvent], None]:
    """Per epoch: metrics and samples to MLflow, quality to Optuna (through `pruning`, which then decides once
    every member has reported), a line to the progress display."""
    h, o = ctx.handle, ctx.overhead

    def observe(ev: EpochEvent) -> None:
        raise_if_interrupted()
        with _timed(o, "mlflow_s"):
            ctx.tracker.log_epoch(prep.child, ev)
        if pruning is not None:
            pruning.report(member, ev.record)
        else:
            q = ev.record.quality
            if q is not None and math.isfinite(getattr(q, h.spec.metric)):
                with _timed(o, "optuna_s"):
                    prep.trial.report(getattr(q, h.spec.metric), ev.record.epoch)
        if ctx.on_epoch:
            ctx.on_epoch(prep.trial.number, ev)

    return observe


def pruning_for(ctx: RunContext, preps: list[Prepared]) -> TrialPruning | None:
    """The study's pruner over these trials (None when the study has none)."""
    if ctx.handle.spec.pruner is None:
        return None

    def record(p: int, result: RunResult, epoch: int) -> None:
        finish(ctx, preps[p], result, pruned_epoch=epoch)
        if ctx.on_pruned:
            ctx.on_pruned(preps[p].trial.number, epoch)

    return TrialPruning([p.trial for p in preps], ctx.handle.spec.metric, record,
                        lambda: _timed(ctx.overhead, "optuna_s"))


def finish(ctx: RunContext, prep: Prepared, result: RunResult, pruned_epoch: int | None = None) -> str:
    """Record a trial's end in both stores (once: a pruned trial is recorded when it is pruned)."""
    if prep.recorded is not None:
        return prep.recorded
    with _timed(ctx.overhead, "mlflow_s"):
        if result.resumed_from:
            ctx.tracker.log_history(prep.child, result.history[:result.resumed_from])
        ctx.tracker.log_result(prep.child, result, pruned_epoch=pruned_epoch)
    label = tell(ctx, prep.trial, result, pruned_epoch)
    with _timed(ctx.overhead, "mlflow_s"):
        extra = {"superseded": "failed as stale by another worker; its retry records this configuration"}
        ctx.tracker.end(prep.child, "FINISHED", **(extra if label == "superseded" else {}))
    if prep.checkpoint is not None:
        prep.checkpoint.unlink(missing_ok=True)
    prep.recorded = label
    return label


def _trial_ids(ctx: RunContext, trials: list[optuna.Trial]) -> list[int]:
    storage = ctx.handle.storage
    study_id = storage.get_study_id_from_name(ctx.handle.name)
    return [storage.get_trial_id_from_study_id_trial_number(study_id, t.number) for t in trials]


def _training(ctx: RunContext, fn):
    """Run `fn` and charge its time, less the tracking calls it made, to training."""
    o = ctx.overhead
    t0, tracked = time.perf_counter(), o.mlflow_s + o.optuna_s
    out = fn()
    o.train_s += time.perf_counter() - t0 - (o.mlflow_s + o.optuna_s - tracked)
    return out


def run_trial(ctx: RunContext, trial: optuna.Trial) -> str:
    """Train one trial on the reference engine and tell Optuna its result (the outcome label, 'superseded' or 'FAIL')."""
    prep = None
    try:
        prep = prepare(ctx, trial)
        pruning = pruning_for(ctx, [prep])
        trainer = Trainer(prep.cfg, ctx.dataset, ctx.evaluator, [observer(ctx, prep, pruning)], log=ctx.log)
        with heartbeat(ctx.handle.storage, _trial_ids(ctx, [trial]), ctx.heartbeat_s):
            result = _training(ctx, lambda: trainer.run(prep.checkpoint, ctx.checkpoint_every, pruning))
        return finish(ctx, prep, result)
    except KeyboardInterrupt:
        with sigint_ignored():  # a second Ctrl-C must not leave the MLflow run RUNNING
            recover(ctx)
            if prep is None or prep.recorded is None:
                fail(ctx, trial, prep.child if prep else None, "interrupted", "KILLED")
        raise
    except Exception as exc:  # noqa: BLE001 - a crash of our code: FAIL with the error, keep sweeping
        if prep is None or prep.recorded is None:
            fail(ctx, trial, prep.child if prep else None, f"{type(exc).__name__}: {exc}", "FAILED",
                 traceback.format_exc())
        if is_fault(exc):
            raise
        return prep.recorded if prep is not None and prep.recorded is not None else "FAIL"


def run_population(ctx: RunContext, trials: list[optuna.Trial]) -> list[tuple[int, str]]:
    """Train trials of one structure as one population; each is told its own result."""
    preps: list[Prepared] = []
    try:
        for t in trials:  # one by one: an interrupt between two still closes the runs already opened
            preps.append(prepare(ctx, t))
        pruning = pruning_for(ctx, preps)
        observers = [observer(ctx, p, pruning, i) for i, p in enumerate(preps)]
        trainer = PopulationTrainer([p.cfg for p in preps], ctx.dataset, ctx.evaluator,
                                    [lambda i, ev: observers[i](ev)], log=ctx.log)
        checkpoints = [p.checkpoint for p in preps]
        with heartbeat(ctx.handle.storage, _trial_ids(ctx, trials), ctx.heartbeat_s):
            results = _training(ctx, lambda: trainer.run(checkpoints, ctx.checkpoint_every, pruning))
        return [(p.trial.number, finish(ctx, p, r)) for p, r in zip(preps, results)]
    except KeyboardInterrupt:
        with sigint_ignored():
            recover(ctx)
            for t, p in zip(trials, preps + [None] * len(trials)):
                if p is None or p.recorded is None:  # a pruned trial was recorded at its epoch's end
                    fail(ctx, t, p.child if p else None, "interrupted", "KILLED")
        raise
    except Exception as exc:  # noqa: BLE001
        for t, p in zip(trials, preps + [None] * len(trials)):
            if p is None or p.recorded is None:
                fail(ctx, t, p.child if p else None, f"{type(exc).__name__}: {exc}", "FAILED", traceback.format_exc())
        if is_fault(exc):
            raise
        return [(t.number, p.recorded if p is not None and p.recorded is not None else "FAIL")
                for t, p in zip(trials, preps + [None] * len(trials))]


def tell(ctx: RunContext, trial: optuna.Trial, result: RunResult, pruned_epoch: int | None = None) -> str:
    """Tell Optuna a trial's end with its attributes; returns its label (ends.SHOWN when the pruner stopped it,
    'superseded' when another worker had already failed it as stale). A pruned run carries no outcome of the
    judge (the judge's reading of an unfinished run is no verdict): `ended_by` pruner and `pruned_epoch`."""
    h, v = ctx.handle, result.verdict
    attrs = {"resumed_from_epoch": result.resumed_from, "epochs_trained": len(result.history),
             "seconds": round(result.seconds, 3), "device": result.device, "dataset": result.dataset_source,
             "train_images": len(ctx.dataset.images), "steps": result.history[-1].step,
             "samples_per_s": round(sum(r.samples_per_s for r in result.history) / len(result.history), 1)}
    if pruned_epoch is None:
        attrs |= {"outcome": v.label, "outcome_epoch": v.epoch, "evidence": v.evidence, "sealed": v.sealed,
                  "mechanism": v.signals.get("mechanism", v.label),
                  ends.ENDED_BY: ends.JUDGE if v.sealed else ends.BUDGET}
    else:
        attrs |= {ends.ENDED_BY: ends.PRUNER, ends.PRUNED_EPOCH: pruned_epoch}
    if result.quality is not None:
        attrs |= {f"final_{k}": val for k, val in result.quality.as_dict().items()}
        ctx.final_fld[trial.number] = result.quality.fld
    attrs |= {k: _finite(v) for k, v in trial_attributes(result.history).items()}  # the probe catalogue's
    evaluated = [r for r in result.history if r.quality is not None and math.isfinite(r.quality.fld)]
    if evaluated:
        best = min(evaluated, key=lambda r: r.quality.fld)
        attrs |= {"best_fld": best.quality.fld, "best_fld_epoch": best.epoch}
    attrs["config"] = result.config.to_flat()
    attrs["device_used"] = str(resolve_device(result.config.device))  # what ran, not "auto"
    with _timed(ctx.overhead, "optuna_s"):
        try:
            for k, val in attrs.items():
                trial.set_user_attr(k, val)
            value = getattr(result.quality, h.spec.metric) if result.quality is not None else math.nan
            if pruned_epoch is not None or v.sealed or not math.isfinite(value):
                h.study.tell(trial, state=TrialState.PRUNED)  # Optuna keeps the last reported value as its value
            else:
                h.study.tell(trial, value)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another worker failed this trial as stale (its heartbeat thread was starved) and
            # enqueued a retry, which will record this configuration; this result is dropped.
            ctx.outcomes["superseded"] += 1
            return "superseded"
    label = v.label if pruned_epoch is None else ends.SHOWN
    ctx.outcomes[label] += 1
    return label


def _finite(x: float) -> float | str:
    """Optuna's attributes are JSON: keep inf and NaN as strings, readable and round-trippable."""
    return x if math.isfinite(x) else str(x)


def is_fault(exc: BaseException) -> bool:
    """A failure of the machine or a store (a full disk, a server gone), not of one trial: sweeping on
    would fail every later trial the same way, so the invocation ends (in one line) instead."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import DBAPIError

    return isinstance(exc, OSError | DBAPIError | MlflowException)  # requests' errors are OSErrors


def fail(ctx: RunContext, trial: optuna.Trial, child: str | None, reason: str, mlflow_status: str,
         detail: str = "") -> None:
    """Close a trial that did not finish: FAIL in Optuna with the reason, its MLflow run ended. Never
    raises: where a store cannot take the record (it is what failed), that is said once in the log and
    the next invocation closes what is left (a stale trial is failed and retried; a child run whose
    invocation is gone is ended). A trial another worker already closed (failed as stale while this
    one was starved) is left as it is: its retry carries the configuration on."""
    reason, detail = urls.mask(reason), urls.mask(detail)  # both are stored, and read by report and atlas
    try:
        trial.set_user_attr("fail_reason", reason[:1000])
        if detail:
            trial.set_user_attr("error", detail[-4000:])
        ctx.handle.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass
    except Exception as exc:  # noqa: BLE001 - the store that failed cannot record the failure
        _unrecorded(ctx, "Optuna", trial.number, exc)
    if child is not None:
        try:
            ctx.tracker.end(child, mlflow_status, fail_reason=reason[:500])
        except Exception as exc:  # noqa: BLE001
            _unrecorded(ctx, "MLflow", trial.number, exc)
    ctx.outcomes["FAIL"] += 1


def _unrecorded(ctx: RunContext, store: str, number: int, exc: Exception) -> None:
    if store in ctx.unrecorded:
        return
    ctx.unrecorded.add(store)
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    (ctx.log or print)(f"{store} could not record the end of trial #{number} ({type(exc).__name__}: {urls.mask(first)[:200]}); "
            f"the next invocation closes it")


def run_trials(ctx: RunContext, limit: int | None = None,
               on_trial: Callable[[int, str, float | None], None] | None = None,
               on_start: Callable[[Prepared], None] | None = None) -> int:
    """Run trials until the study has no work left (or `limit` trials ran); returns how many ran.

    The reference engine takes one trial at a time; the population engine takes up to
    `population_size`, trains those it supports as populations and the rest one by one."""
    ran = 0
    ctx.on_start = on_start
    with interrupt_on_sigterm():
        while limit is None or ran < limit:
            want = 1 if ctx.engine == "reference" else min(ctx.population_size, (limit or 10**9) - ran)
            raise_if_interrupted()
            batch = []
            while len(batch) < want:
                trial = next_trial(ctx, wait=not batch)  # our own claimed trials are RUNNING too
                if trial is None:
                    break
                batch.append(trial)
            if not batch:
                break
            for number, label in _run_batch(ctx, batch):
                ran += 1
                if on_trial:
                    on_trial(number, label, ctx.final_fld.get(number))
    return ran


def _run_batch(ctx: RunContext, batch: list[optuna.Trial]):
    """(trial number, label) as each trial or population finishes (a generator: progress lines come
    when a population ends, not when the whole batch does)."""
    if ctx.engine == "reference" or len(batch) == 1:
        for t in batch:
            yield t.number, run_trial(ctx, t)
        return
    h = ctx.handle
    cfgs = [h.spec.run_config({p.name: p.suggest(t) for p in h.spec.space},
                              t.user_attrs.get("seed", h.spec.seeds[0]), h.profile, **ctx.overrides) for t in batch]
    for group in split_into_populations(cfgs, ctx.population_size):
        members = [batch[i] for i in group]
        if len(members) > 1:
            yield from run_population(ctx, members)
        else:
            yield members[0].number, run_trial(ctx, members[0])


def recover(ctx: RunContext) -> None:
    """Fresh connections to both stores before an interrupt's records are written (`storage.recover`)."""
    with contextlib.suppress(Exception):
        storage_recover(ctx.handle.storage)
    with contextlib.suppress(Exception):
        ctx.tracker.recover()


def raise_if_interrupted() -> None:
    """The safe point for an interrupt whose KeyboardInterrupt a finalizer swallowed (`signals`): each
    epoch of every trial and before each batch of trials."""
    signum = signals.consume()
    if signum is not None:
        raise Interrupted(f"signal {signum}")


@contextlib.contextmanager
def sigint_ignored():
    """Ctrl-C is ignored while the block runs (the cleanup after a first Ctrl-C must finish)."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class interrupt_on_sigterm:
    """SIGTERM (a cluster stopping the job) is handled like Ctrl-C: the trial in hand is closed."""

    def __enter__(self):
        def handler(signum, frame):
            signals.note(signum)
            raise Interrupted(f"signal {signum}")

        try:
            self.previous = signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread: leave signals alone
            self.previous = None
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
