"""Running a study: trials from Optuna, training by gan_core, tracking in MLflow.

Trial states: a normal end is COMPLETE with the objective; a run whose fate was sealed early
(diverged, D overpowered, dead gradients) is stopped and PRUNED, its outcome kept; an
exception in our code is FAIL with the error stored; Ctrl-C (or SIGTERM) marks the trial
in hand FAIL with reason "interrupted", ends its MLflow run as KILLED, and the next `run`
finishes exactly the missing trials.
"""

from __future__ import annotations

import math
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from gan_core.data import Dataset
from gan_core.evaluator import Evaluator
from gan_core.trainer import EpochEvent, RunResult, Trainer

from .storage import StudyHandle, enqueue_missing_seeds, git_commit, pop_waiting, sampled_configs
from .tracking import Tracker


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
    """Run-config overrides from the command line (dataset, device, epochs)."""
    on_epoch: Callable[[EpochEvent], None] | None = None
    """Progress display."""
    overhead: Overhead = field(default_factory=Overhead)
    """Orchestration cost so far."""
    outcomes: Counter = field(default_factory=Counter)
    """Outcome labels of this invocation's trials."""


class _timed:
    """Add the wall time of a block to an Overhead field."""

    def __init__(self, overhead: Overhead, name: str) -> None:
        self.o, self.name = overhead, name

    def __enter__(self) -> None:
        self.t = time.perf_counter()

    def __exit__(self, *exc) -> None:
        setattr(self.o, self.name, getattr(self.o, self.name) + time.perf_counter() - self.t)


def next_trial(ctx: RunContext) -> optuna.Trial | None:
    """The next trial to run: an enqueued one, else (tpe / random) a newly sampled configuration."""
    h = ctx.handle
    with _timed(ctx.overhead, "optuna_s"):
        trial = pop_waiting(h)
        if trial is not None or h.spec.sampler == "grid":
            return trial
        if sampled_configs(h.study) >= (h.profile.trials or 0):
            return None
        trial = h.study.ask()
        trial.set_user_attr("seed", h.spec.seeds[0])
        trial.set_user_attr("sampled", True)  # its other seeds are enqueued once its params exist
    return trial


def run_trial(ctx: RunContext, trial: optuna.Trial) -> str:
    """Train one trial and tell Optuna its result; returns the outcome label (or 'FAIL')."""
    h, o = ctx.handle, ctx.overhead
    with _timed(o, "optuna_s"):
        params = {p.name: p.suggest(trial) for p in h.spec.space}
        seed = trial.user_attrs.get("seed", h.spec.seeds[0])
        if trial.user_attrs.get("sampled"):
            enqueue_missing_seeds(h)  # this new configuration's other seeds
        trial.set_user_attr("git_commit", git_commit())
    child = None
    try:
        cfg = h.spec.run_config(params, seed, h.profile, **ctx.overrides)
        with _timed(o, "mlflow_s"):
            child = ctx.tracker.start_run(
                f"trial-{trial.number}", parent=ctx.parent_run, params=cfg.to_flat(),
                tags={"optuna_trial": trial.number, "optuna_study": h.name, "seed": seed,
                      "git_commit": git_commit(), **{f"swept.{k}": v for k, v in params.items()}})
        with _timed(o, "optuna_s"):
            trial.set_user_attr("mlflow_run_id", child)

        def observe(ev: EpochEvent) -> None:
            with _timed(o, "mlflow_s"):
                ctx.tracker.log_epoch(child, ev)
            q = ev.record.quality
            if q is not None:
                value = getattr(q, h.spec.metric)
                if math.isfinite(value):
                    with _timed(o, "optuna_s"):
                        trial.report(value, ev.record.epoch)
            if ctx.on_epoch:
                ctx.on_epoch(ev)

        t0 = time.perf_counter()
        tracked_before = o.mlflow_s + o.optuna_s
        result = Trainer(cfg, ctx.dataset, ctx.evaluator, [observe]).run()
        o.train_s += time.perf_counter() - t0 - (o.mlflow_s + o.optuna_s - tracked_before)
        with _timed(o, "mlflow_s"):
            ctx.tracker.log_result(child, result)
        label = tell(ctx, trial, result)
        with _timed(o, "mlflow_s"):
            ctx.tracker.end(child, "FINISHED")
        return label
    except KeyboardInterrupt:
        fail(ctx, trial, child, "interrupted", "KILLED")
        raise
    except Exception as exc:  # noqa: BLE001 - a crash of our code: FAIL with the error, keep sweeping
        fail(ctx, trial, child, f"{type(exc).__name__}: {exc}", "FAILED", traceback.format_exc())
        return "FAIL"


def tell(ctx: RunContext, trial: optuna.Trial, result: RunResult) -> str:
    h, v = ctx.handle, result.verdict
    attrs = {"outcome": v.label, "outcome_epoch": v.epoch, "evidence": v.evidence, "sealed": v.sealed,
             "mechanism": v.signals.get("mechanism", v.label), "epochs_trained": len(result.history),
             "seconds": round(result.seconds, 3), "device": result.device, "dataset": result.dataset_source,
             "samples_per_s": round(sum(r.samples_per_s for r in result.history) / len(result.history), 1)}
    if result.quality is not None:
        attrs |= {f"final_{k}": val for k, val in result.quality.as_dict().items()}
    last = result.history[-1]
    attrs |= {f"last_{k}": _finite(getattr(last, k)) for k in
              ("loss_d", "loss_g", "d_real", "d_fake", "clamp_rate", "grad_d_max", "grad_g_max",
               "frozen_grad_g", "frozen_grad_d", "leak_g", "leak_d")}
    attrs["g_steps"] = sum(r.g_steps for r in result.history)
    attrs["g_capped"] = sum(r.g_capped for r in result.history)
    attrs["grad_d_peak"] = _finite(max(r.grad_d_max for r in result.history))
    evaluated = [r for r in result.history if r.quality is not None and math.isfinite(r.quality.fld)]
    if evaluated:
        best = min(evaluated, key=lambda r: r.quality.fld)
        attrs |= {"best_fld": best.quality.fld, "best_fld_epoch": best.epoch}
    attrs["config"] = result.config.to_flat()
    with _timed(ctx.overhead, "optuna_s"):
        for k, val in attrs.items():
            trial.set_user_attr(k, val)
        value = getattr(result.quality, h.spec.metric) if result.quality is not None else math.nan
        if v.sealed or not math.isfinite(value):
            h.study.tell(trial, state=TrialState.PRUNED)
        else:
            h.study.tell(trial, value)
    ctx.outcomes[v.label] += 1
    return v.label


def _finite(x: float) -> float | str:
    """Optuna's attributes are JSON: keep inf and NaN as strings, readable and round-trippable."""
    return x if math.isfinite(x) else str(x)


def fail(ctx: RunContext, trial: optuna.Trial, child: str | None, reason: str, mlflow_status: str,
         detail: str = "") -> None:
    """Close a trial that did not finish: FAIL in Optuna with the reason, its MLflow run ended."""
    try:
        trial.set_user_attr("fail_reason", reason[:1000])
        if detail:
            trial.set_user_attr("error", detail[-4000:])
        ctx.handle.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    finally:
        if child is not None:
            ctx.tracker.end(child, mlflow_status, fail_reason=reason[:500])
    ctx.outcomes["FAIL"] += 1


def run_trials(ctx: RunContext, limit: int | None = None,
               on_trial: Callable[[int, str], None] | None = None) -> int:
    """Run trials until the study has no work left (or `limit` trials ran); returns how many ran."""
    ran = 0
    with interrupt_on_sigterm():
        while limit is None or ran < limit:
            trial = next_trial(ctx)
            if trial is None:
                break
            label = run_trial(ctx, trial)
            ran += 1
            if on_trial:
                on_trial(trial.number, label)
    return ran


class interrupt_on_sigterm:
    """SIGTERM (a cluster stopping the job) is handled like Ctrl-C: the trial in hand is closed."""

    def __enter__(self):
        def handler(signum, frame):
            raise Interrupted(f"signal {signum}")

        try:
            self.previous = signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread: leave signals alone
            self.previous = None
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
