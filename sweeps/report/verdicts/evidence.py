"""What a verdict on sample quality rests on besides success rates: the continuous measures with their
intervals (FLD and legibility, as the effects table computes them), and whether the verdict holds when
the success bar moves by its band either way.

A claim about quality ("too small an lr gives poor results", "the literal reading makes good digits")
is not settled by success rates alone: where every arm has 0% successes, rates cannot tell settings
apart, yet FLD can differ by hundreds with an interval clear of zero. So the measures decide where the
rates cannot, and a verdict says which carried it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pandas as pd

from gan_core.judge.labels import SEALED_LABELS
from gan_core.judge.outcome import label_quality
from gan_core.judge.thresholds import Thresholds
from gan_core.records import Quality
from sweeps.report.data import numeric
from sweeps.report.stats import mean_ci, mean_diff, newcombe
from sweeps.report.verdicts.arms import MIN_RUNS, Arm, decide, difference

MEASURES = (("fld", "FLD", False), ("legible", "legibility", True))
"""The continuous measures a quality verdict reads: (column after final_, name, higher is better)."""


@dataclass(frozen=True)
class Difference:
    """One measure's difference between two arms (the one the claim warns against minus the other)."""

    name: str
    """The measure's name in a sentence."""
    d: float
    """The difference of means."""
    low: float
    """Its 95% interval's lower end."""
    high: float
    """Its 95% interval's upper end."""
    method: str
    """welch or bootstrap (stats.mean_diff)."""
    worse: bool | None
    """True: the first arm is worse with the interval clear of zero; False: better; None: cannot tell."""

    def text(self) -> str:
        if math.isnan(self.low):
            return f"{self.name} {self.d:+.3g} (too few runs for an interval)"
        return f"{self.name} {self.d:+.3g} (95% CI {self.low:+.3g} to {self.high:+.3g}, {self.method})"


def differences(df: pd.DataFrame, bad: pd.Series, good: pd.Series) -> list[Difference]:
    """FLD and legibility of the runs in `bad` against those in `good`."""
    out = []
    for column, name, higher_better in MEASURES:
        values = numeric(df, f"final_{column}")
        d, low, high, method = mean_diff(values[bad].tolist(), values[good].tolist())
        lower, higher = high < 0, low > 0  # the first arm's mean clearly below or above the other's
        worse = None if math.isnan(low) else (lower if higher_better else higher) or (
            False if (higher if higher_better else lower) else None)
        out.append(Difference(name, d, low, high, method, worse))
    return out


def combine(bad: Arm, good: Arm, diffs: list[Difference]) -> tuple[str, str, int | None, str]:
    """The verdict from the success rates (`arms.decide`) and the measures: (status, why, seeds needed, what
    carried it). A decided rate stands unless a measure says the opposite; an open rate is decided by the
    measures when they agree."""
    rate_status, rate_why, need = decide(bad, good)
    said = [x for x in diffs if x.worse is not None]
    measure = ("supported" if all(x.worse for x in said) else "contradicted" if not any(x.worse for x in said)
               else "mixed") if said else None
    shown = "; ".join(x.text() for x in diffs)
    if rate_status in ("supported", "contradicted"):
        if measure not in (None, rate_status):
            return "inconclusive", f"{rate_why}, but the measures point the other way ({shown})", need, "neither"
        carried = "the success rates" + (f" and {', '.join(x.name for x in said)}" if measure == rate_status else "")
        return rate_status, f"{rate_why}; {shown}", None, carried
    if measure in ("supported", "contradicted") and min(bad.n, good.n) >= MIN_RUNS:
        verb = "support" if measure == "supported" else "contradict"
        d, low, high = newcombe(bad.k, bad.n, good.k, good.n)
        return measure, (f"the success rates cannot tell them apart ({difference(d, low, high)}), but the measures "
                         f"{verb} the seed: {shown}"), None, ", ".join(x.name for x in said)
    return "inconclusive", f"{rate_why}; nor do the measures tell ({shown})", need, "neither"


def against_bar(df: pd.DataFrame, mask: pd.Series, th: Thresholds | None) -> tuple[str | None, str]:
    """Whether the runs in `mask` meet the success bar on the measures, with their 95% intervals: "supported"
    when FLD's interval lies below the bar and legibility's above it, "contradicted" when either lies clear
    on the wrong side, else None; and the sentence."""
    if th is None:
        return None, ""
    fld, fld_lo, fld_hi = mean_ci(numeric(df, "final_fld")[mask].tolist())
    leg, leg_lo, leg_hi = mean_ci(numeric(df, "final_legible")[mask].tolist())
    text = (f"mean FLD {fld:.3g} (95% CI {fld_lo:.3g} to {fld_hi:.3g}) against the success bar {th.success_fld:.3g}, "
            f"legibility {leg:.2f} (95% CI {leg_lo:.2f} to {leg_hi:.2f}) against {th.success_legible:.2f}")
    if math.isnan(fld_lo) or math.isnan(leg_lo):
        return None, text
    if fld_hi <= th.success_fld and leg_lo >= th.success_legible:
        return "supported", text
    if fld_lo > th.success_fld or leg_hi < th.success_legible:
        return "contradicted", text
    return None, text


def relabelled(df: pd.DataFrame, th: Thresholds) -> pd.DataFrame:
    """The finished runs as the judge would label them under `th`: runs sealed during training keep their
    label; the others are labelled again from their final quality."""
    fields = [f.name for f in dataclasses.fields(Quality)]
    required = [f.name for f in dataclasses.fields(Quality) if f.default is dataclasses.MISSING]
    if df.empty or not all(f"final_{f}" in df for f in required):
        return df
    # a measure added since the study ran keeps its default (NaN: not measured, which no rule counts against it)
    kept = [f for f in fields if f"final_{f}" in df]
    out = df.copy()
    for i, row in df.iterrows():
        if row["outcome"] in SEALED_LABELS:
            continue
        q = Quality(**{f: float(row[f"final_{f}"]) if f != "coverage" else int(row[f"final_{f}"]) for f in kept})
        out.at[i, "outcome"] = label_quality(q, th)[0]
    return out


BAR_HOLDS, BAR_DEPENDS = "holds whatever the bar", "depends on the bar"
