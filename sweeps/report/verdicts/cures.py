"""The cures-study's verdicts: what each of the field's cures does, added alone, to the seed's own
configuration (which fails) and to the working reading (which succeeds), and what removing each of
the seed's own three cures does to them.

A cure is supported when it turns the seed's failures into successes (fewer failures with it than
without, the difference's 95% interval above zero) without breaking the working reading;
contradicted when it makes either reading fail more often; otherwise inconclusive, with the seeds
per arm that would settle it. Beside the status: which failure labels it removes, and its cost in
FLD on the working reading (its cost in time is a `gan-sweep bench` figure: arms trained in one
population share their wall time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pandas as pd

from gan_core.config import RunConfig
from gan_core.judge.labels import FAILURES
from gan_core.toggles import CURE_KEYS
from sweeps.report.data import StudyData, numeric
from sweeps.report.stats import newcombe, seeds_needed
from sweeps.report.verdicts.arms import (
    MIN_RUNS,
    Arm,
    ClaimVerdict,
    arm,
    concluded,
    decide,
    difference,
    more_seeds,
    not_swept,
    same,
)
from sweeps.study.claims import BY_ID

READINGS = ("our default reading of the seed", "the working reading")
SHORT = {READINGS[0]: "seed", READINGS[1]: "working"}
"""How an arm's name says its reading (the atlas's arm lists and thumbnail captions)."""


def _readings(df: pd.DataFrame) -> pd.Series:
    """Which reading each run belongs to: the seed's G output (sigmoid) or the working reading's (tanh)."""
    sigmoid = RunConfig().to_flat()["g_output"]
    g_out = df["g_output"].astype(str) if "g_output" in df else pd.Series(sigmoid, index=df.index)
    return g_out.map(lambda v: READINGS[0] if v == sigmoid else READINGS[1])


def _removals(df: pd.DataFrame, reading: pd.Series) -> dict[str, pd.Series]:
    """Masks of the runs with one of the seed's three cures removed (the adaptive rule only where the
    reading has it: the working reading's schedule is fixed by design)."""
    def col(key: str, default) -> pd.Series:
        return df[key].astype(str) if key in df else pd.Series(str(default), index=df.index)

    return {
        "the clamp": col("clamp", "clamp") == "none",
        "clipping": col("clip_d", 1.0) == "off",
        "the adaptive rule": (col("schedule", "adaptive") == "fixed") & (reading == READINGS[0]),
    }


def _cures_on(df: pd.DataFrame) -> pd.DataFrame:
    """A boolean column per cure: on in that run."""
    off = RunConfig().to_flat()
    return pd.DataFrame({k: (df[k].map(lambda v, k=k: not same(v, off[k])) if k in df else False)
                         for k in CURE_KEYS}, index=df.index)


def _labels(df: pd.DataFrame, mask: pd.Series) -> str:
    counts = df.loc[mask, "outcome"].value_counts()
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "no runs"


def _fld(df: pd.DataFrame, mask: pd.Series) -> float:
    return numeric(df, "final_fld")[mask].median()


class _Design:
    """The cures-study's arms, found in its trials."""

    def __init__(self, df: pd.DataFrame) -> None:
        self.df = df
        self.reading = _readings(df)
        self.on = _cures_on(df)
        self.removed = _removals(df, self.reading)
        none_removed = ~pd.concat(self.removed.values(), axis=1).any(axis=1)
        self.plain = none_removed & ~self.on.any(axis=1)

    def base(self, r: str) -> pd.Series:
        return self.plain & (self.reading == r)

    def cure(self, key: str, r: str) -> pd.Series:
        others = self.on.drop(columns=key).any(axis=1)
        return self.on[key] & ~others & ~pd.concat(self.removed.values(), axis=1).any(axis=1) & (self.reading == r)

    def removal(self, name: str, r: str) -> pd.Series:
        return self.removed[name] & ~self.on.any(axis=1) & (self.reading == r)


def _compare(more: Arm, fewer: Arm) -> tuple[float, float, float] | None:
    """The difference in failure rate more - fewer with its 95% interval (None: too few runs)."""
    if min(more.n, fewer.n) < MIN_RUNS:
        return None
    return newcombe(more.k, more.n, fewer.k, fewer.n)


def cure_verdict(data: StudyData, df: pd.DataFrame, claim_id: str) -> ClaimVerdict:
    """The verdict on one of the field's cures (claim id = its config key)."""
    claim = BY_ID[claim_id].text
    if claim_id not in data.swept:
        return not_swept(claim_id, claim, claim_id)
    d = _Design(df)
    arms, parts = [], []
    hurts, helps = [], None  # (reading, difference) with the cure minus without
    for r in READINGS:
        base, cure = d.base(r), d.cure(claim_id, r)
        if not base.any() or not cure.any():
            continue
        without = arm(df, f"plain ({SHORT[r]})", base, FAILURES)
        with_ = arm(df, f"+ {claim_id} ({SHORT[r]})", cure, FAILURES)
        arms += [without, with_]
        gone = [label for label in df.loc[base, "outcome"].unique()
                if label in FAILURES and label not in set(df.loc[cure, "outcome"])]
        text = (f"On {r}: {replace(without, name='without it').text('failed')}: {_labels(df, base)}; "
                f"{replace(with_, name='with it').text('failed')}: {_labels(df, cure)}")
        if gone:
            text += f"; it removes {', '.join(gone)}"
        a, b = _fld(df, base), _fld(df, cure)
        if pd.notna(a) and pd.notna(b):
            text += f"; median final FLD {a:.0f} without, {b:.0f} with ({b - a:+.0f})"
        parts.append(text + ".")
        diff = _compare(with_, without)
        hurts.append((r, diff))
        if without.k and helps is None:  # the first reading where runs fail (the seed's, when it is there)
            helps = (r, diff, without, with_)
    if not arms:
        return ClaimVerdict(claim_id, claim, "not tested", "No arm of this cure beside its reading's plain run yet.")
    need = None
    broken = [(r, x) for r, x in hurts if x is not None and x[1] > 0]
    if broken:
        status, why = "contradicted", f"it makes runs fail more often on {broken[0][0]} ({difference(*broken[0][1])})"
    elif helps is None:
        status, why = "inconclusive", "nothing failed without it, so there was nothing to cure at this budget"
    elif helps[1] is None:
        status, why, need = "inconclusive", f"too few runs for a verdict: at least {MIN_RUNS} seeds per arm", MIN_RUNS
    elif helps[1][2] < 0:
        status, why = "supported", f"it turns failures into successes on {helps[0]} ({difference(*helps[1])})"
    else:
        status = "inconclusive"
        need = seeds_needed(helps[2].rate, helps[3].rate)
        why = (f"it does not change the failure rate on {helps[0]} beyond chance ({difference(*helps[1])})"
               + (f"; {more_seeds(need, helps[2:])}" if need else ""))
    return ClaimVerdict(claim_id, claim, status, concluded(" ".join(parts), why), tuple(arms), need)


def seed_cures_verdict(data: StudyData, df: pd.DataFrame, claim_id: str) -> ClaimVerdict:
    """The seed's own three cures, each removed from the readings that have it: is each one needed?
    Supported when removing one makes runs fail more often; contradicted when removing one makes them
    fail less often (the cure was hurting); otherwise inconclusive."""
    claim = BY_ID[claim_id].text
    d = _Design(df)
    arms, parts, decided = [], [], []
    for name in d.removed:
        for r in READINGS:
            base, gone = d.base(r), d.removal(name, r)
            if not base.any() or not gone.any():
                continue
            without = arm(df, f"without {name} ({SHORT[r]})", gone, FAILURES)
            plain = arm(df, f"plain ({SHORT[r]})", base, FAILURES)
            arms += [without] + ([plain] if plain not in arms else [])  # each reading's plain arm once
            parts.append(f"Without {name}, on {r}: {without.k} of {without.n} failed ({_labels(df, gone)}) against "
                         f"{plain.k} of {plain.n} with it ({_labels(df, base)}).")
            decided.append((name, r, decide(without, plain)))
    if not arms:
        return ClaimVerdict(claim_id, claim, "not tested", "This study removes none of the seed's cures.")
    needed = [(n, r) for n, r, s in decided if s[0] == "supported"]
    hurting = [(n, r) for n, r, s in decided if s[0] == "contradicted"]
    if hurting:
        status = "contradicted"
        why = "removing " + "; ".join(f"{n} ({r})" for n, r in hurting) + " makes runs fail less often"
    elif needed:
        status = "supported"
        why = "removing " + "; ".join(f"{n} ({r})" for n, r in needed) + " makes runs fail more often"
    else:
        status = "inconclusive"
        why = "no removal changes the failure rate beyond chance at this budget"
    need = max((s[2] for _, _, s in decided if s[2]), default=None) if status == "inconclusive" else None
    return ClaimVerdict(claim_id, claim, status, concluded(" ".join(parts), why), tuple(arms), need)


JUDGES: dict[str, Callable[[StudyData, pd.DataFrame, str], ClaimVerdict]] = {
    **{k: cure_verdict for k in CURE_KEYS}, "seed_cures": seed_cures_verdict}
"""The cures-study's claims and their judges."""
