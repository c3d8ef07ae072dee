"""What ended a trial's run, declared once: every finished trial carries it (Optuna user attribute, MLflow
tag and trials.csv column `ended_by`), because Optuna's state cannot say it. A run the judge sealed has
long been told PRUNED (its fate was decided: nothing later could change it), and a run the study's pruner
stopped is told PRUNED too (Optuna's pruners and samplers count on that state), yet only the first carries
an outcome of the judge: a pruned run was stopped for being behind the others, not judged, and no rate or
verdict counts it.
"""

from __future__ import annotations

from typing import Any

ENDED_BY = "ended_by"
"""The attribute (Optuna), tag (MLflow) and column (trials.csv) that says what ended a run."""
PRUNED_EPOCH = "pruned_epoch"
"""The epoch at whose end the study's pruner stopped a run (pruned runs only)."""

BUDGET = "budget"
JUDGE = "judge"
PRUNER = "pruner"
MEANINGS = {
    BUDGET: "trained its whole budget; the judge's label is final (Optuna COMPLETE)",
    JUDGE: "the judge sealed its fate during training (Optuna PRUNED, with its outcome; it stops then unless "
           "stop_early is off)",
    PRUNER: "the study's pruner stopped it at pruned_epoch (Optuna PRUNED, no outcome of the judge; in no rate "
            "or verdict)",
}
"""Every value of ended_by and what it means."""
SHOWN = "pruned"
"""What stands where a run the pruner stopped has no outcome: the report's outcome column and progress lines (like
FAIL for a crash, it is not one of the judge's labels)."""
COUNT_KEY = "PRUNED_BY_PRUNER"
"""Where a study's counts (`storage.counts`) tally the runs its pruner stopped: upper case as Optuna's states,
so that no list of outcome labels (lower case) takes it for one."""


def ended_by(user_attrs: dict[str, Any], finished: bool) -> str | None:
    """A trial's ended_by; for a trial stored before the attribute existed, from whether the judge sealed it
    (no pruner stopped a run then). None for a trial that has not finished."""
    if not finished:
        return None
    if user_attrs.get(ENDED_BY) in MEANINGS:
        return user_attrs[ENDED_BY]
    return JUDGE if user_attrs.get("sealed") else BUDGET
