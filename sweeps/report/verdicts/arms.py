"""What every verdict is made of: the arms a claim compares, the verdict itself, and the decision
from a difference of rates (Newcombe's interval), shared by the pitfall and the cure judges."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from sweeps.report.data import StudyData, level_column
from sweeps.report.stats import fmt_ci, newcombe, seeds_needed, wilson

MIN_RUNS = 3
"""No verdict from fewer runs per arm than this."""

STATUSES = ("supported", "contradicted", "inconclusive", "not tested")
"""A verdict's status; the atlas colours and counts these."""


@dataclass(frozen=True)
class Arm:
    """Runs on one side of a comparison, and how many of them show the failure."""

    name: str
    """How the sentence names the arm."""
    k: int
    """Runs that show the failure."""
    n: int
    """Runs in the arm."""
    trials: tuple[int, ...] = ()
    """The trial numbers the arm rests on (for the atlas's thumbnails and links)."""

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else math.nan

    def text(self, what: str) -> str:
        if not self.n:
            return f"{self.name}: not run yet"
        low, high = wilson(self.k, self.n)
        return f"{self.name}, {self.k} of {self.n} runs {what} (95% CI {fmt_ci(low, high)})"


@dataclass(frozen=True)
class ClaimVerdict:
    """One claim's verdict."""

    claim_id: str
    """The claim (sweeps/study/claims.py): a pitfall number, "adaptive", "headline" or a cure."""
    claim: str
    """What the seed says."""
    status: str
    """supported, contradicted, inconclusive, or not tested."""
    sentence: str
    """The plain sentence with its numbers."""
    arms: tuple[Arm, ...] = ()
    """The arms compared, the one the seed warns against first."""
    seeds_needed: int | None = None
    """When inconclusive: about how many seeds per arm would settle it (None: unknown or settled)."""
    why_open: str = ""
    """When inconclusive for a reason more seeds would not change: that reason, in a few words."""
    bar: str = ""
    """Whether the status holds when the success bar moves by its band either way ("holds whatever the bar",
    "depends on the bar"), or "" where the study stored no thresholds to move."""


def arm(df: pd.DataFrame, name: str, mask: pd.Series, labels: tuple[str, ...]) -> Arm:
    g = df[mask]
    return Arm(name, int(g["outcome"].isin(labels).sum()), len(g), tuple(int(t) for t in g["trial"]))


def pts(x: float) -> str:
    p = 100 * x
    return f"{p:+.2f}" if abs(p) < 1 else f"{p:+.1f}" if abs(p) < 10 else f"{p:+.0f}"


def by_other_keys(data: StudyData, df: pd.DataFrame, key: str, bad: str, good: str, labels: tuple[str, ...],
                  what: str) -> str:
    """The comparison within each level of the other swept keys (where does the effect show?)."""
    parts = []
    lv = level_column(df, key)
    for other in (k for k in data.swept if k != key and k in df):
        olv = level_column(df, other)
        for level in dict.fromkeys(olv):
            b = df[(lv == bad) & (olv == level)]
            g = df[(lv == good) & (olv == level)]
            if len(b) and len(g):
                parts.append(f"at {other} = {level}, {bad} {int(b['outcome'].isin(labels).sum())}/{len(b)} "
                             f"vs {good} {int(g['outcome'].isin(labels).sum())}/{len(g)} {what}")
    return ("By condition: " + "; ".join(parts) + ".") if parts else ""


# -- the sentences' shared endings ----------------------------------------------------------------

def difference(d: float, low: float, high: float) -> str:
    """A difference of rates in points with its 95% interval, as every verdict words it."""
    return f"difference {pts(d)} points, 95% CI {pts(low)} to {pts(high)}"


def more_seeds(need: int, arms: tuple[Arm, ...]) -> str:
    """How many more seeds per arm would settle an open verdict, counted from its smallest arm."""
    return f"about {max(need - min(a.n for a in arms), 1)} more seeds per arm would settle it"


def concluded(text: str, why: str) -> str:
    """A verdict's sentence: the numbers, then what they say."""
    return f"{text} So {why}."


def not_swept(claim_id: str, claim: str, what: str) -> ClaimVerdict:
    """The verdict on a claim whose study does not vary what it is about."""
    return ClaimVerdict(claim_id, claim, "not tested", f"This study does not sweep {what}.")


def decide(bad: Arm, good: Arm) -> tuple[str, str, int | None]:
    """supported / contradicted / inconclusive from the difference bad - good (Newcombe), the reason,
    and when inconclusive about how many seeds per arm would settle it."""
    if min(bad.n, good.n) < MIN_RUNS:
        need = MIN_RUNS - min(bad.n, good.n)
        return "inconclusive", f"too few runs for a verdict: run at least {need} more seed(s) per arm", MIN_RUNS
    d, low, high = newcombe(bad.k, bad.n, good.k, good.n)
    diff = difference(d, low, high)
    if low > 0:
        return "supported", f"the data support the seed ({diff})", None
    if high < 0:
        return "contradicted", f"the data contradict the seed ({diff})", None
    n = seeds_needed(bad.rate, good.rate)
    if n is None:
        return "inconclusive", (f"no difference seen ({diff}); at this budget the data do not support the seed's "
                                f"claim"), None
    return "inconclusive", f"cannot tell yet ({diff}); {more_seeds(n, (bad, good))}", n


def verdict(claim_id: str, claim: str, bad: Arm, good: Arm, text: str) -> ClaimVerdict:
    status, why, need = decide(bad, good)
    return ClaimVerdict(claim_id, claim, status, concluded(text, why).replace("  ", " "), (bad, good), need)


def same(a, b) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


