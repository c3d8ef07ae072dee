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

import typer

from sweeps import urls
from sweeps.console import err, out
from sweeps.errors import EXIT_INTERRUPTED, UserError, interrupt_told
from sweeps.running.plan import RunOptions, resolve


@contextlib.contextmanager
def ending(tracker, run_id: str):
    """End the MLflow run however the block ends: FINISHED is the block's own business; an interrupt
    ends it KILLED, an error FAILED, each with any child run its trials left RUNNING. A second Ctrl-C
    during that cleanup is ignored."""
    from sweeps.running.runner import sigint_ignored

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
    r = resolve(opts)  # every option and URL form checked before torch and the stores' libraries load
    from gan_core import memory
    from gan_core.data import load_dataset
    from gan_core.judge.evaluator import Evaluator
    from sweeps.running.progress import RunDisplay
    from sweeps.running.runner import (
        Interrupted,
        RunContext,
        interrupt_on_sigterm,
        run_trials,
    )
    from sweeps.stores.storage import (
        StaleTrials,
        counts,
        open_study_for,
        probe_storage,
        study_names,
    )
    from sweeps.stores.tracking import Tracker, probe_tracking

    probe_storage(opts.storage)  # both stores answer, read-only, before either is created or written
    probe_tracking(opts.tracking_uri, r.name)  # (with every place a run writes beside them: artifacts, locks)
    if not create and r.name not in (study_names(opts.storage) or []):
        raise UserError(f"study {r.name!r} does not exist in {urls.mask(opts.storage)}; start it with gan-sweep run")
    data = load_dataset(r.base.data.dataset, r.base.data.data_dir)
    if r.max_batch > len(data.images):
        raise UserError(f"batch_size {r.max_batch} is larger than the data set ({len(data.images)} images: "
                        f"{data.source})")
    members = min(r.population_size if r.engine == "population" else 1, r.planned)
    memory.check(r.by_memory, members, len(data.images), data.image_dim, memory.device_free(r.device),
                 what=f"a population of {members} trials" if members > 1 else "a trial")
    evaluator = Evaluator(data, r.device, log=err.print)  # a broken evaluator fails before any store exists

    try:
        with interrupt_on_sigterm():
            stale = StaleTrials()
            handle, added = open_study_for(r, opts, create, stale, log=err.print)
            if create:  # what the study's runs are labelled with: its report moves the success bar from here
                handle.study.set_user_attr("thresholds", dataclasses.asdict(evaluator.thresholds()))
            tracker = Tracker(opts.tracking_uri, r.name, r.spec.description)
            stale.tracker = tracker
            heartbeat_s = handle.heartbeat_s
            closed = tracker.close_dead_parents(3 * heartbeat_s)
            if closed:
                err.print(f"closed {closed} MLflow run(s) of invocations that died (heartbeat stale) or left a trial open")
            if heartbeat_s != opts.heartbeat:
                err.print(f"heartbeat: {heartbeat_s} s, the study's own (--heartbeat {opts.heartbeat} applies to new "
                          f"studies only)")
            epochs = f"{r.profile.epochs} epoch{'' if r.profile.epochs == 1 else 's'}"
            err.print(f"study {r.name!r} ({r.profile.name} profile, {epochs} per trial, {r.engine} engine) in "
                      f"{urls.mask(opts.storage)}; {added} trials enqueued now; data: {data.source}",
                      soft_wrap=True)  # one line in a log (grep finds it whole), as every progress line
            started = time.perf_counter()
            parent = tracker.start_run(f"{r.name} {'run' if create else 'worker'} {time.strftime('%Y-%m-%d %H:%M:%S')}",
                                       tags={"gan_sweep.kind": "study" if create else "worker",
                                             "profile": r.profile.name, "engine": r.engine,
                                             "study_source": r.spec.source})
            with ending(tracker, parent), tracker.parent_heartbeat(parent, heartbeat_s):
                display = RunDisplay(handle, r.planned, r.profile.epochs)
                ctx = RunContext(handle, data, evaluator, tracker, parent, r.overrides, display.on_epoch,
                                 engine=r.engine, population_size=r.population_size,
                                 checkpoint_dir=opts.checkpoint_dir, heartbeat_s=heartbeat_s, log=display.say,
                                 on_pruned=display.on_pruned)
                with display:
                    ran = run_trials(ctx, limit=opts.trials, on_trial=display.on_trial, on_start=display.on_start)
                # once more at the end: an invocation that died just before this one started (its heartbeat
                # still fresh then, as after a store that froze and came back) has gone stale by now; best
                # effort, as the next invocation does it again: every trial here has already finished
                with contextlib.suppress(Exception):
                    tracker.close_dead_parents(3 * heartbeat_s)
                summarize(handle, ctx, ran)
                files = None
                if create:
                    from sweeps.commands.reading import report_study

                    files = report_study(r.name, opts.storage, opts.tracking_uri, opts.out_dir)
                tracker.log_summary(parent, counts(handle.study), time.perf_counter() - started, ctx.overhead.ratio,
                                    {k: files[k] for k in ("html", "csv")} if files else None)
                tracker.end(parent, "FINISHED", trials_run=ran)
    except KeyboardInterrupt as exc:
        why = str(exc) if isinstance(exc, Interrupted) else "Ctrl-C"
        err.print(f"interrupted ({why}): a trial in hand is marked FAIL (reason: interrupted); run the same "
                  f"command again to finish the missing trials", soft_wrap=True)  # one line in a log, not two at 80
        interrupt_told(told=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def summarize(handle, ctx, ran: int) -> None:
    from sweeps.stores.ends import COUNT_KEY
    from sweeps.stores.storage import counts

    c = counts(handle.study)
    states = ", ".join(f"{k} {c[k]}" for k in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING") if c.get(k))
    if c.get(COUNT_KEY):  # PRUNED holds both: runs the judge sealed and runs the pruner stopped
        states = states.replace(f"PRUNED {c['PRUNED']}", f"PRUNED {c['PRUNED']} ({c[COUNT_KEY]} by the study's pruner, "
                                                         f"{c['PRUNED'] - c[COUNT_KEY]} sealed by the judge)")
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


