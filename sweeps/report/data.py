"""A study's trials as one tidy pandas row each: the flat config, seed, state, outcome and its
evidence, final and best quality, final losses and probes, time, and the MLflow run id."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from gan_core.config import RunConfig
from gan_core.judge.labels import LABELS, UNDECIDED
from gan_core.records import TRIAL_REDUCTIONS
from sweeps.errors import UserError
from sweeps.stores import ends

STATE_COLUMNS = ["trial", "state", "outcome", "seed", "value", "outcome_epoch", "epochs_trained", "sealed",
                 "mechanism", "seconds", "samples_per_s", ends.ENDED_BY, ends.PRUNED_EPOCH]
FAIL = "FAIL"
"""The outcome column's value for a trial our code crashed on (or that was interrupted)."""
PRUNED = ends.SHOWN
"""The outcome column's value for a run the study's pruner stopped: it has no outcome of the judge (not a label;
Optuna's state PRUNED also holds runs the judge sealed, which keep theirs: `ended_by` tells them apart)."""


@dataclass(frozen=True)
class StudyData:
    """Everything a report needs from storage."""

    name: str
    """The study's name in storage."""
    trials: pd.DataFrame
    """One row per trial."""
    swept: list[str]
    """The swept config keys (columns of `trials`)."""
    spec: dict[str, Any]
    """What the study recorded about itself (source, description, space, baseline, pitfall ...)."""
    metric: str
    """The objective's metric (a final_<metric> column)."""
    direction: str
    """minimize or maximize."""
    thresholds: dict[str, Any] | None = None
    """The judge's thresholds the study's runs were labelled with (None for studies stored without them)."""

    @property
    def finished(self) -> pd.DataFrame:
        return self.trials[self.trials["outcome"].isin(LABELS)]

    @property
    def decided(self) -> pd.DataFrame:
        """The finished runs success and failure rates count: all but those counted apart (over budget)."""
        return self.trials[self.trials["outcome"].isin(LABELS) & ~self.trials["outcome"].isin(UNDECIDED)]

    @property
    def pruned(self) -> pd.DataFrame:
        """The runs the study's pruner stopped: in no rate, table of outcomes or verdict."""
        return self.trials[self.trials["outcome"] == PRUNED]

    @property
    def partial(self) -> bool:
        return bool(self.trials["state"].isin(["RUNNING", "WAITING"]).any())


def _num(x: Any) -> Any:
    """Attributes keep inf/NaN as strings (JSON); turn them back into floats."""
    if isinstance(x, str) and x in ("nan", "inf", "-inf"):
        return float(x)
    return x


def trial_row(t: optuna.trial.FrozenTrial, base: dict[str, Any]) -> dict[str, Any]:
    ua = {k: _num(v) for k, v in t.user_attrs.items()}
    params = t.params or t.system_attrs.get("fixed_params", {})
    config = dict(base) | dict(ua.get("config") or {}) | params
    finished = t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    ended_by = ends.ended_by(ua, finished)
    if ended_by == ends.PRUNER:
        outcome = PRUNED
    elif finished:
        outcome = ua.get("outcome", "?")
    else:
        outcome = FAIL if t.state == TrialState.FAIL else t.state.name
    row = {
        "trial": t.number, "state": t.state.name, "outcome": outcome, "seed": ua.get("seed"),
        "value": t.value, "outcome_epoch": ua.get("outcome_epoch"), "epochs_trained": ua.get("epochs_trained"),
        "sealed": ua.get("sealed"), "mechanism": ua.get("mechanism"), "seconds": ua.get("seconds"),
        "samples_per_s": ua.get("samples_per_s"), "evidence": ua.get("evidence") or ua.get("fail_reason"),
        "mlflow_run_id": ua.get("mlflow_run_id"), "git_commit": ua.get("git_commit"),
        "device_used": ua.get("device_used"), "steps": ua.get("steps"), "train_images": ua.get("train_images"),
        ends.ENDED_BY: ended_by, ends.PRUNED_EPOCH: ua.get(ends.PRUNED_EPOCH),
    }
    row |= {k: v for k, v in ua.items() if k.startswith(("final_", "best_")) or k in TRIAL_REDUCTIONS}
    row |= {f"cfg_{k}" if k in row else k: v for k, v in config.items()}
    return row


def load_study_data(study: optuna.Study) -> StudyData:
    spec = study.user_attrs.get("spec", {})
    if not isinstance(spec, dict) or not isinstance(spec.get("fixed", {}), dict | None):
        raise UserError(f"study {study.study_name!r} was not made by gan-sweep (its 'spec' attribute is "
                        f"{type(spec).__name__ if not isinstance(spec, dict) else 'malformed'}); nothing to report")
    base = RunConfig.from_flat(spec.get("fixed", {})).to_flat() if spec.get("fixed") is not None else RunConfig().to_flat()
    trials = study.get_trials(deepcopy=False)
    rows = [trial_row(t, base) for t in trials]
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=STATE_COLUMNS)
    swept = list(dict.fromkeys(k for t in trials for k in (t.params or t.system_attrs.get("fixed_params", {}))))
    for col in df.columns:  # attributes stored inf/NaN as strings: numeric columns become numeric again
        if df[col].dtype == object and col not in ("evidence", "mechanism", "outcome", "state", ends.ENDED_BY):
            converted = pd.to_numeric(df[col], errors="coerce")
            if converted.notna().sum() == df[col].notna().sum():
                df[col] = converted
    if ends.PRUNED_EPOCH in df:  # an epoch, blank where no pruner stopped the run (not 3.0 beside NaN)
        df[ends.PRUNED_EPOCH] = pd.to_numeric(df[ends.PRUNED_EPOCH], errors="coerce").astype("Int64")
    direction = study.direction.name.lower()
    return StudyData(study.study_name, df.sort_values("trial").reset_index(drop=True), swept, spec,
                     spec.get("metric", "fld"), direction, study.user_attrs.get("thresholds"))


def numeric(df: pd.DataFrame, column: str) -> pd.Series:
    """A column as floats; all NaN when no trial recorded it (e.g. every trial crashed)."""
    if column not in df:
        return pd.Series(float("nan"), index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce").astype(float)


def is_log_scale(values: pd.Series) -> bool:
    """Positive numbers spanning more than a decade (learning rates): bin by decade."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    return len(v) > 0 and len(v) == values.dropna().shape[0] and (v > 0).all() and v.max() / v.min() > 10


BIN_ABOVE = 6
"""A key with more distinct values than this (sampled, not gridded) is grouped into bins."""


def level_column(df: pd.DataFrame, key: str) -> pd.Series:
    """The levels a table groups `key` by: its values, or for a log-scale key with many distinct
    values (a sampled learning rate) decades written [1e-4, 1e-3)."""
    if key in df and is_log_scale(df[key]) and df[key].nunique() > BIN_ABOVE:
        decade = pd.to_numeric(df[key]).map(lambda x: math.floor(math.log10(x) + 1e-9))
        return decade.map(lambda d: f"[1e{d}, 1e{d + 1})")
    return df[key].astype(str) if key in df else pd.Series(dtype=str)


def median_trial(g: pd.DataFrame, metric: str) -> pd.Series:
    """The typical row of `g`: the one whose final `metric` is the median among the rows that have
    one (not the most flattering), or the middle row when none has."""
    g = g.assign(_m=numeric(g, f"final_{metric}")).sort_values("_m", na_position="last")
    known = g.dropna(subset=["_m"])
    pool = known if not known.empty else g
    return pool.iloc[(len(pool) - 1) // 2]
