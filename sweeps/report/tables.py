"""The report's tables: outcomes per level of each swept key (rates with Wilson intervals),
quality over seeds per configuration, each key's effect against the seed's baseline, and the
best and worst configurations."""

from __future__ import annotations

import math

import pandas as pd

from gan_core.config import RunConfig
from gan_core.judge.labels import LABELS, UNDECIDED
from sweeps.report.data import FAIL, StudyData, is_log_scale, level_column, numeric
from sweeps.stores import ends
from sweeps.report.stats import mean_diff, newcombe, wilson


def outcome_table(data: StudyData, key: str) -> pd.DataFrame:
    """Per level of `key`: runs, count per outcome (crashes counted as FAIL), success rate and its
    95% Wilson interval over the finished runs that are decided (a run over budget is counted apart)."""
    df = data.trials[data.trials["outcome"].isin(LABELS + (FAIL,))].copy()
    df["level"] = level_column(df, key)
    rows = []
    for level, g in _ordered_groups(df, key):
        finished = g[(g["outcome"] != FAIL) & ~g["outcome"].isin(UNDECIDED)]
        k, n = int((finished["outcome"] == "success").sum()), len(finished)
        low, high = wilson(k, n)
        row = {key: level, "runs": n}
        row |= {label: int((g["outcome"] == label).sum()) for label in LABELS}
        row[FAIL] = int((g["outcome"] == FAIL).sum())
        row |= {"success_rate": k / n if n else math.nan, "ci_low": low, "ci_high": high}
        rows.append(row)
    return pd.DataFrame(rows)


def _ordered_groups(df: pd.DataFrame, key: str):
    """Groups in a natural order: numeric levels ascending, others as first seen (the grid's order)."""
    levels = list(dict.fromkeys(df["level"]))
    values = pd.to_numeric(df[key], errors="coerce") if key in df else pd.Series(dtype=float)
    if len(values) and values.notna().all():
        first = values.groupby(df["level"]).min()
        levels.sort(key=lambda lv: first[lv])
    for lv in levels:
        yield lv, df[df["level"] == lv]


def config_table(data: StudyData) -> pd.DataFrame:
    """Per configuration (the swept keys): seeds run, outcomes, success k/n and quality mean and std."""
    df = data.finished
    if df.empty or not data.swept:
        return pd.DataFrame()
    metric = f"final_{data.metric}"
    rows = []
    for values, g in df.groupby(data.swept, sort=False, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        row = dict(zip(data.swept, values))
        q = numeric(g, metric)
        row |= {"seeds": len(g), "outcomes": _outcome_summary(g["outcome"]),
                "success": f"{int((g['outcome'] == 'success').sum())}/{int((~g['outcome'].isin(UNDECIDED)).sum())}",
                f"{data.metric}_mean": q.mean(), f"{data.metric}_std": q.std(ddof=1) if q.notna().sum() > 1 else math.nan,
                "classes_mean": numeric(g, "final_classes").mean()}
        rows.append(row)
    out = pd.DataFrame(rows)
    ascending = data.direction == "minimize"
    return out.sort_values(f"{data.metric}_mean", ascending=ascending, na_position="last").reset_index(drop=True)


def _outcome_summary(outcomes: pd.Series) -> str:
    counts = outcomes.value_counts()
    return ", ".join(f"{label} {counts[label]}" for label in LABELS if label in counts)


def baseline_value(data: StudyData, key: str):
    """The seed's setting of `key`: the study's declared baseline, else the run config's default."""
    declared = data.spec.get("baseline") or {}
    return declared[key] if key in declared else RunConfig().to_flat()[key]


def effect_table(data: StudyData) -> pd.DataFrame:
    """Each swept key's levels against its baseline level: difference in success rate (Newcombe
    95% interval) and in the objective metric (Welch's t 95% interval over seeds for up to 10 runs per
    arm, a bootstrap beyond)."""
    df = data.decided
    metric = f"final_{data.metric}"
    rows = []
    for key in data.swept:
        if key not in df:
            continue
        base = baseline_value(data, key)
        levels = level_column(df, key)
        base_level = level_column(pd.DataFrame({key: [base]}), key).iloc[0] if is_log_scale(df[key]) else str(base)
        if base_level not in set(levels):
            continue
        b = df[levels == base_level]
        for level in dict.fromkeys(levels):
            if level == base_level:
                continue
            g = df[levels == level]
            d, lo, hi = newcombe(int((g["outcome"] == "success").sum()), len(g),
                                 int((b["outcome"] == "success").sum()), len(b))
            m, mlo, mhi, method = mean_diff(numeric(g, metric).tolist(), numeric(b, metric).tolist())
            rows.append({"key": key, "level": level, "baseline": base_level, "runs": len(g), "baseline_runs": len(b),
                         "success_diff": d, "success_ci_low": lo, "success_ci_high": hi,
                         f"{data.metric}_diff": m, f"{data.metric}_ci_low": mlo, f"{data.metric}_ci_high": mhi,
                         "interval": method})
    return pd.DataFrame(rows)


def best_worst(data: StudyData, n: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The best configurations (most successes, then the best objective; never one that produced no
    quality at all) and the worst (the fewest successes, then the worst objective), never the same rows."""
    table = config_table(data)
    if table.empty:
        return table, table
    metric = f"{data.metric}_mean"
    rate = table["success"].map(lambda s: int(s.split("/")[0]) / max(int(s.split("/")[1]), 1))
    sign = 1 if data.direction == "minimize" else -1
    ranked = table.assign(_rate=rate, _m=sign * table[metric]).sort_values(["_rate", "_m"], ascending=[False, True],
                                                                         na_position="last")
    measured = ranked[ranked[metric].notna()]
    best = measured.head(n)
    rest = ranked.drop(best.index)
    worst = rest.sort_values(["_rate", "_m"], ascending=[True, False], na_position="first").head(n)
    drop = ["_rate", "_m"]
    return best.drop(columns=drop).reset_index(drop=True), worst.drop(columns=drop).reset_index(drop=True)


def pruned_table(data: StudyData) -> pd.DataFrame:
    """The runs the study's pruner stopped, apart from the judge's labels: each one's swept values, seed, the
    epoch it was pruned at, its objective then (the last value it reported) and its best FLD so far."""
    df = data.pruned
    if df.empty:
        return pd.DataFrame()
    rows = []
    for _, r in df.sort_values("trial").iterrows():
        row = {"trial": int(r["trial"])} | {k: r[k] for k in data.swept if k in r} | {"seed": r["seed"]}
        row |= {"pruned_at_epoch": r[ends.PRUNED_EPOCH], f"{data.metric}_then": r.get(f"final_{data.metric}", math.nan),
                "best_fld": r.get("best_fld", math.nan)}
        rows.append(row)
    return pd.DataFrame(rows)
