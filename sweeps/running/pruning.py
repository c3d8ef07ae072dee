"""The study's pruner acting on the trials a process trains: a `gan_core.loop.Stopper`.

Inside a population, at each evaluated epoch every member reports its value first (the trials' observers,
called member by member), and only then does the pruner decide, for each member that reported at that
epoch, in the order of the trials' numbers. A decision so depends on the reports and on the decisions
before it in that order (successive halving records each rung's value as it decides), never on which
member was called back first, on a thread or on a process's timing: run again, the same study prunes the
same trials at the same epochs. A pruned member leaves the population at that epoch's end (the loop drops
it through `subset`: its compute goes to the others at once) and is recorded there and then (Optuna
PRUNED, ended_by pruner), so a process killed later does not lose the decision. The reference engine runs
the same class over one trial; across workers on PostgreSQL each process decides for its own trials,
through the trial and the shared storage (Optuna's successive halving is asynchronous by design).

A decision is written to its trial (`pruned_epoch`) the moment it is made, before the result is recorded:
a process killed in between leaves a trial whose retry inherits the attribute, and the retry, resumed from
its last checkpoint (never one past the decision), replays it: it trains on to that epoch and stops there,
without asking the pruner again (which would find the rung already passed, successive halving having
recorded it on the dead trial).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import optuna

from gan_core.records import EpochRecord, RunResult
from sweeps.stores import ends


class TrialPruning:
    """Reports to Optuna and asks its pruner, for the trials of one population (member p: trials[p])."""

    def __init__(self, trials: list[optuna.Trial], metric: str, record: Callable[[int, RunResult, int], None],
                 timed: Callable[[], object]) -> None:
        self.trials = trials
        self.metric = metric
        self.record = record
        """Records member p's result, pruned at the given epoch, in both stores."""
        self.timed = timed
        """A context manager that charges a block to Optuna's time (runner.Overhead)."""
        self.reported: list[set[int]] = [set() for _ in trials]
        """Per member, the epochs reported to its trial."""
        self.pruned: dict[int, int] = {}
        """Member -> the epoch the pruner stopped it at."""
        self.decided = [t.user_attrs.get(ends.PRUNED_EPOCH) for t in trials]
        """Per member, a decision its trial inherited from a dead trial it retries (None: none)."""

    def value(self, rec: EpochRecord) -> float | None:
        """The objective an epoch reports: its evaluation's metric, when there was one and it is finite."""
        q = rec.quality
        v = getattr(q, self.metric) if q is not None else math.nan
        return v if math.isfinite(v) else None

    def report(self, p: int, rec: EpochRecord) -> None:
        """Report member p's epoch (once: a resumed trial's restored epochs are reported when it resumes)."""
        v = self.value(rec)
        if v is not None and rec.epoch not in self.reported[p]:
            with self.timed():
                self.trials[p].report(v, rec.epoch)
            self.reported[p].add(rec.epoch)

    # -- gan_core.loop.Stopper ------------------------------------------------------------------------
    def restored(self, p: int, history: list[EpochRecord]) -> None:
        """A retried trial resumes from its checkpoint: the pruner sees the epochs it restored, as it saw them
        on the dead trial, before any new one."""
        for rec in history:
            self.report(p, rec)

    def decide(self, epoch: int, members: list[int]) -> list[int]:
        asked = sorted((p for p in members if epoch in self.reported[p]), key=lambda p: self.trials[p].number)
        stop = []
        with self.timed():
            for p in asked:
                replayed = self.decided[p] is not None
                if (self.decided[p] == epoch) if replayed else self.trials[p].should_prune():
                    self.trials[p].set_user_attr(ends.PRUNED_EPOCH, epoch)  # durable before the next decision
                    self.pruned[p] = epoch
                    stop.append(p)
        return stop

    def ended(self, p: int, result: RunResult) -> None:
        self.record(p, result, self.pruned[p])
