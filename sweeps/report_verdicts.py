"""A plain sentence per pitfall of the seed, with the numbers behind it.

Each verdict compares the runs where the pitfall is present with the runs where the seed's
cure is applied, on the failure the seed warns of, and says whether the data support the
seed's claim, contradict it, or cannot tell yet (and then how many more seeds would).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from gan_core.outcome import FAILURES

from .report_data import StudyData, level_column, numeric
from .report_tables import baseline_value
from .report_stats import fmt_ci, newcombe, seeds_needed, wilson

MIN_RUNS = 3
"""No verdict from fewer runs per arm than this."""

CLAIMS = {
    1: "Clamp D's output when computing the loss, or the log blows up.",
    2: "GANs easily explode their gradients: clip gradients while training.",
    3: "If D trains faster and its loss becomes 0, the loss stays 0 and training may die.",
    4: "Too small an lr makes |L1| and |L2| high while the actual results are poor.",
    5: "After eval() gradients are still computed: use requires_grad_(False), or clear both nets' gradients.",
}


@dataclass(frozen=True)
class Verdict:
    """One pitfall's verdict."""

    pitfall: int
    """The seed's numbering (1-5)."""
    claim: str
    """What the seed says."""
    status: str
    """supported, contradicted, inconclusive, or not tested."""
    sentence: str
    """The plain sentence with its numbers."""


@dataclass(frozen=True)
class Arm:
    """Runs on one side of a comparison, and how many of them show the failure."""

    name: str
    """How the sentence names the arm."""
    k: int
    """Runs that show the failure."""
    n: int
    """Runs in the arm."""

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else math.nan

    def text(self, what: str) -> str:
        if not self.n:
            return f"{self.name}: not run yet"
        low, high = wilson(self.k, self.n)
        return f"{self.name}, {self.k} of {self.n} runs {what} (95% CI {fmt_ci(low, high)})"


def _arm(df: pd.DataFrame, name: str, mask: pd.Series, labels: tuple[str, ...]) -> Arm:
    g = df[mask]
    return Arm(name, int(g["outcome"].isin(labels).sum()), len(g))


def _pts(x: float) -> str:
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


def _decide(bad: Arm, good: Arm) -> tuple[str, str]:
    """supported / contradicted / inconclusive from the difference bad - good (Newcombe)."""
    if min(bad.n, good.n) < MIN_RUNS:
        need = MIN_RUNS - min(bad.n, good.n)
        return "inconclusive", f"too few runs for a verdict: run at least {need} more seed(s) per arm"
    d, low, high = newcombe(bad.k, bad.n, good.k, good.n)
    diff = f"difference {_pts(d)} points, 95% CI {_pts(low)} to {_pts(high)}"
    if low > 0:
        return "supported", f"the data support the seed ({diff})"
    if high < 0:
        return "contradicted", f"the data contradict the seed ({diff})"
    n = seeds_needed(bad.rate, good.rate)
    if n is None:
        return "inconclusive", (f"no difference seen ({diff}); at this budget the data do not support the seed's "
                                f"claim")
    more = max(n - min(bad.n, good.n), 1)
    return "inconclusive", f"cannot tell yet ({diff}); about {more} more seeds per arm would settle it"


def _levels(data: StudyData, key: str) -> pd.Series:
    return level_column(data.finished, key)


def verdict(data: StudyData) -> Verdict | None:
    pitfall = data.spec.get("pitfall")
    if pitfall not in CLAIMS:
        return None
    df = data.finished
    claim = CLAIMS[pitfall]
    if df.empty:
        return Verdict(pitfall, claim, "not tested", "No finished runs yet.")
    return {1: _clamp, 2: _clip, 3: _overpowered, 4: _lr, 5: _freeze}[pitfall](data, df, claim)


def _clamp(data: StudyData, df: pd.DataFrame, claim: str) -> Verdict:
    if "clamp" not in data.swept:
        return Verdict(1, claim, "not tested", "This study does not sweep clamp.")
    lv = _levels(data, "clamp")
    bad = _arm(df, "Without clamping", lv == "none", ("diverged",))
    good = _arm(df, "with the seed's clamp", lv == "clamp", ("diverged",))
    status, why = _decide(bad, good)
    text = f"{bad.text('diverged')}; {good.text('diverged')}."
    dead = int(((lv == "clamp") & (df["outcome"] == "stalled")).sum())
    if dead:
        text += (f" But with clamping, {dead} of {good.n} runs stalled (D saturated and the clamp zeroed every "
                 f"gradient): the clamp trades the NaN for a dead D.")
    if (lv == "logits").any():
        text += " " + _arm(df, "With stable logits", lv == "logits", ("diverged",)).text("diverged") + "."
    cond = by_other_keys(data, df, "clamp", "none", "clamp", ("diverged",), "diverged")
    return Verdict(1, claim, status, f"{text} {cond} So {why}.".replace("  ", " "))


def _clip(data: StudyData, df: pd.DataFrame, claim: str) -> Verdict:
    key = next((k for k in ("clip_d", "clip_g") if k in data.swept), None)
    if key is None:
        return Verdict(2, claim, "not tested", "This study does not sweep clipping.")
    lv = _levels(data, key)
    off = lv == "off"
    bad = _arm(df, "Without clipping", off, ("diverged",))
    good = _arm(df, "with clipping", ~off, ("diverged",))
    status, why = _decide(bad, good)
    peak = numeric(df, "grad_d_peak")
    text = f"{bad.text('diverged')}; {good.text('diverged')}."
    if peak.notna().any() and off.any() and (~off).any():
        text += (f" Median peak pre-clip norm of D's gradient: {peak[off].median():.3g} unclipped vs "
                 f"{peak[~off].median():.3g} clipped.")
    base = str(baseline_value(data, key)) if key in data.swept else "1.0"
    cond = by_other_keys(data, df, key, "off", base, ("diverged",), "diverged")
    return Verdict(2, claim, status, f"{text} {cond} So {why}.".replace("  ", " "))


def _overpowered(data: StudyData, df: pd.DataFrame, claim: str) -> Verdict:
    key = next((k for k in ("schedule", "lr_d", "g_loop_cap", "d_steps") if k in data.swept), data.swept[0])
    lv = _levels(data, key)
    base = str(baseline_value(data, key))
    base_level = level_column(pd.DataFrame({key: [baseline_value(data, key)]}), key).iloc[0] \
        if key.startswith("lr") else base
    bad = _arm(df, f"With the seed's {key} = {base_level}", lv == base_level, ("d_overpowered",))
    good = _arm(df, f"with the other {key} settings", lv != base_level, ("d_overpowered",))
    status, why = _decide(bad, good)
    capped = numeric(df, "g_capped")
    text = f"{bad.text('ended with D overpowered (loss ~0 and D(G(z)) ~0 for 2+ epochs)')}; {good.text('did')}."
    if capped.notna().any() and capped.sum() > 0:
        text += f" The inner G loop hit its cap on {int(capped.sum())} batches in all (the seed's loop has no cap)."
    return Verdict(3, claim, status, f"{text} So {why}.")


def _lr(data: StudyData, df: pd.DataFrame, claim: str) -> Verdict:
    """Results poor at the smallest lr (runs that did not succeed, against the best lr), and the
    losses' magnitudes there against the best lr's."""
    key = next((k for k in ("lr_d", "lr_g") if k in data.swept), None)
    if key is None:
        return Verdict(4, claim, "not tested", "This study does not sweep the learning rate.")
    lv = _levels(data, key)
    numeric_lr = pd.to_numeric(df[key])
    smallest = lv[numeric_lr == numeric_lr.min()].iloc[0]
    success = df.groupby(lv)["outcome"].apply(lambda s: (s == "success").mean())
    best = success.drop(smallest, errors="ignore").idxmax() if len(success) > 1 else None
    if best is None:
        return Verdict(4, claim, "not tested", "Only one learning rate was run.")
    fails = FAILURES
    bad = _arm(df, f"At the smallest lr ({smallest})", lv == smallest, fails)
    good = _arm(df, f"at the best lr ({best})", lv == best, fails)
    status, why = _decide(bad, good)

    def absmean(col: str, mask) -> float:
        return numeric(df, col)[mask].abs().mean()

    small_l = (absmean("last_loss_d", lv == smallest), absmean("last_loss_g", lv == smallest))
    best_l = (absmean("last_loss_d", lv == best), absmean("last_loss_g", lv == best))
    labels = df.loc[lv == smallest, "outcome"].value_counts()
    text = (f"{bad.text('did not succeed')} ({', '.join(f'{k} {v}' for k, v in labels.items())}); "
            f"{good.text('did not')}. |loss_d| and |loss_g| at the end: {small_l[0]:.3g} and {small_l[1]:.3g} at the "
            f"smallest lr vs {best_l[0]:.3g} and {best_l[1]:.3g} at {best}.")
    higher = small_l[0] > best_l[0] and small_l[1] > best_l[1]
    if status == "supported" and not higher:
        status, why = "inconclusive", why + ", but the losses are not higher at the small lr, as the seed says they are"
    return Verdict(4, claim, status, f"{text} So {why}.")


def _freeze(data: StudyData, df: pd.DataFrame, claim: str) -> Verdict:
    if "freeze" not in data.swept:
        return Verdict(5, claim, "not tested", "This study does not sweep freeze.")
    lv = _levels(data, "freeze")
    ev, rg = lv == "eval_only", lv == "requires_grad"
    wasted = numeric(df, "last_frozen_grad_g")
    speed = numeric(df, "samples_per_s")
    bad = Arm("With only eval()", int((wasted[ev] > 0).sum()), int(ev.sum()))
    good = Arm("with requires_grad_(False)", int((wasted[rg] > 0).sum()), int(rg.sum()))
    status, why = _decide(bad, good)
    text = f"{bad.text('still computed gradients for the frozen G')}; {good.text('did')}."
    if speed[ev].notna().any() and speed[rg].notna().any():
        text += f" Training speed: {speed[ev].mean() / speed[rg].mean():.2f}x of the requires_grad_(False) runs."
    if "zero_grad" in data.swept:
        z = _levels(data, "zero_grad")
        leak = numeric(df, "last_leak_g")
        mask = ev & (z == "own_after_step")
        if mask.any():
            text += (f" Combined with clearing only its own gradients, the stale gradient leaked into G's update in "
                     f"{int((leak[mask] > 0).sum())} of {int(mask.sum())} runs; their success rate was "
                     f"{(df.loc[mask, 'outcome'] == 'success').mean():.0%} vs "
                     f"{(df.loc[~mask, 'outcome'] == 'success').mean():.0%} otherwise.")
    return Verdict(5, claim, status, f"{text} So {why}.")
