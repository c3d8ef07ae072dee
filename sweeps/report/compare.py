"""A search study side by side with a grid study (`gan-sweep compare`): the compute each spent and the best
configuration each found, and whether the two agree on the best region.

- Compute: member-epochs, the epochs every finished run trained (pruned and sealed runs stop early and
  count what they trained; a run retried from its checkpoint counts its restored epochs once; crashed
  runs record none).
- Best: among the runs that trained their whole budget (`ended_by` budget: a run sealed or pruned early
  has no final value to rank), the configuration whose objective, averaged over its seeds, is best.
- Region: the search's best configuration snapped, key by key, to the grid's nearest level (on a log scale
  for a key whose levels span more than a decade); it agrees when that is the grid's best configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from sweeps.errors import UserError
from sweeps.report.data import StudyData, is_log_scale, numeric
from sweeps.stores import ends


@dataclass(frozen=True)
class Side:
    """One study's column of the comparison."""

    name: str
    """The study's name in storage."""
    how: str
    """Its sampler and pruner, in a few words."""
    epochs: int | None
    """Its budget per run (the profile's epochs)."""
    runs: int
    """Finished runs (pruned ones included)."""
    pruned: int
    """Runs its pruner stopped."""
    sealed: int
    """Runs the judge sealed (stopped early where stop_early is on)."""
    member_epochs: int
    """Epochs trained by all its finished runs together."""
    best: dict[str, Any]
    """Its best configuration's swept values (empty: no run trained its whole budget)."""
    best_value: float
    """That configuration's objective, the mean over its seeds' runs."""
    best_runs: int
    """Runs behind best_value."""
    devices: str
    """The devices its runs trained on."""


@dataclass(frozen=True)
class Comparison:
    """A grid and a search side by side."""

    grid: Side
    """The grid study."""
    search: Side
    """The search study."""
    metric: str
    """The objective both rank by."""
    keys: tuple[str, ...]
    """The keys both sweep (the region is theirs)."""
    region: dict[str, Any]
    """The search's best snapped to the grid's levels."""
    agrees: bool
    """Whether that region is the grid's best configuration."""
    grid_at_region: float
    """The grid's own objective at that region (the mean over its runs there; NaN: none trained its budget)."""

    @property
    def share(self) -> float:
        """The search's member-epochs as a share of the grid's."""
        return self.search.member_epochs / self.grid.member_epochs if self.grid.member_epochs else math.nan


def _means(data: StudyData, keys: tuple[str, ...]) -> pd.DataFrame:
    """Per configuration of `keys`, the mean objective of its runs that trained their whole budget (and how many),
    best first."""
    df = data.trials
    full = df[df["state"].isin(["COMPLETE", "PRUNED"]) & (df[ends.ENDED_BY] == ends.BUDGET)]
    full = full.assign(_m=numeric(full, f"final_{data.metric}")).dropna(subset=["_m"])
    if full.empty:
        return pd.DataFrame(columns=[*keys, "mean", "size"])
    means = full.groupby(list(keys), dropna=False)["_m"].agg(["mean", "size"]).reset_index()
    return means.sort_values("mean", ascending=data.direction == "minimize").reset_index(drop=True)


def _side(data: StudyData, keys: tuple[str, ...]) -> Side:
    finished = data.trials[data.trials["state"].isin(["COMPLETE", "PRUNED"])]
    means = _means(data, keys)
    best, value, n = {}, math.nan, 0
    if not means.empty:
        top = means.iloc[0]
        best, value, n = {k: top[k] for k in keys}, float(top["mean"]), int(top["size"])
    how = data.spec.get("sampler") or "?"
    if data.spec.get("pruner"):
        how += f" + {str(data.spec['pruner']).split(' (')[0]}"
    # the device each run resolved to ("auto" is what was asked; a store older than device_used has only that)
    used = finished.get("device_used", pd.Series(index=finished.index, dtype=object))
    asked = finished.get("device", pd.Series(index=finished.index, dtype=object))
    devices = ", ".join(sorted(str(d) for d in used.fillna(asked).dropna().unique()))
    return Side(data.name, how, data.spec.get("epochs"), len(finished), int((finished[ends.ENDED_BY] == ends.PRUNER).sum()),
                int((finished[ends.ENDED_BY] == ends.JUDGE).sum()), int(numeric(finished, "epochs_trained").fillna(0).sum()),
                best, value, n, devices or "?")


def snap(value: Any, levels: list[Any]) -> Any:
    """The level nearest to `value` (in log10 where the levels span more than a decade of positive numbers)."""
    nums = pd.to_numeric(pd.Series(levels), errors="coerce")
    if nums.isna().any() or not isinstance(value, (int, float)):
        return value if value in levels else None
    log = is_log_scale(pd.Series(levels)) and value > 0
    dist = [abs(math.log10(value) - math.log10(x)) if log else abs(value - x) for x in nums]
    return levels[dist.index(min(dist))]


def compare(grid: StudyData, search: StudyData) -> Comparison:
    """The comparison of two studies' trials (a UserError when they share no swept key or objective)."""
    keys = tuple(k for k in grid.swept if k in search.swept)
    if not keys:
        raise UserError(f"studies {grid.name!r} and {search.name!r} sweep no key in common "
                        f"({', '.join(grid.swept) or 'none'} vs {', '.join(search.swept) or 'none'})")
    if grid.metric != search.metric or grid.direction != search.direction:
        raise UserError(f"studies {grid.name!r} and {search.name!r} have different objectives "
                        f"({grid.direction} {grid.metric} vs {search.direction} {search.metric})")
    g, s = _side(grid, keys), _side(search, keys)
    region = {k: snap(s.best[k], sorted(grid.trials[k].dropna().unique().tolist())) for k in keys} if s.best else {}
    agrees = bool(region) and bool(g.best) and all(region[k] == g.best[k] for k in keys)
    there = _means(grid, keys)
    for k in keys:
        there = there[there[k] == region.get(k)]
    return Comparison(g, s, grid.metric, keys, region, agrees, float(there["mean"].iloc[0]) if len(there) else math.nan)


def _fmt(values: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()) or "-"


def rows(c: Comparison) -> pd.DataFrame:
    """The side-by-side table, a row per study."""
    out = []
    for side, role in ((c.grid, "grid"), (c.search, "search")):
        share = 1.0 if role == "grid" else c.share
        out.append({"study": f"{side.name} ({role})", "sampler": side.how, "epochs per run": side.epochs,
                    "runs": side.runs, "pruned": side.pruned, "sealed": side.sealed,
                    "member-epochs": f"{side.member_epochs:,} ({100 * share:.0f}%)",
                    "best configuration": _fmt(side.best),
                    f"best {c.metric} (mean over its runs)": "-" if math.isnan(side.best_value)
                    else f"{side.best_value:.1f} ({side.best_runs})",
                    "best region": _fmt(c.region if role == "search" else side.best) + (
                        "" if role == "grid" else (" (agrees)" if c.agrees else " (differs)")),
                    "device": side.devices})
    return pd.DataFrame(out)
