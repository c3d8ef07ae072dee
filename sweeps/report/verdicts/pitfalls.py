"""A plain sentence per claim of the seed (sweeps/study/claims.py), with the numbers behind it.

Each pitfall's verdict compares the runs where the pitfall is present with the runs where the
seed's cure is applied, on the failure the seed warns of, and says whether the data support the
seed's claim, contradict it, or cannot tell yet (and then how many more seeds would). The
headline's verdict asks whether the most literal reading of the seed succeeds at its budget, and names
each other reading that holds or refutes it.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from gan_core.judge.labels import FAILURES
from gan_core.judge.thresholds import Thresholds
from sweeps.report.data import StudyData, level_column, numeric
from sweeps.report.stats import fmt_ci, wilson
from sweeps.report.tables import baseline_value
from sweeps.report.verdicts.arms import (
    MIN_RUNS,
    Arm,
    ClaimVerdict,
    arm,
    by_other_keys,
    concluded,
    decide,
    not_swept,
    same,
    verdict,
)
from sweeps.report.verdicts.evidence import against_bar, combine, differences
from sweeps.study.claims import BY_ID


def _levels(df: pd.DataFrame, key: str) -> pd.Series:
    """The levels of `key` over the runs a judge was given (a verdict's runs, or them relabelled)."""
    return level_column(df, key)


def _clamp(data: StudyData, df: pd.DataFrame, claim_id: str) -> ClaimVerdict:
    """Runs without the clamp against runs with the seed's clamp, on how often they diverge (and how
    often the clamp stalls them instead)."""
    claim = BY_ID[claim_id].text
    if "clamp" not in data.swept:
        return not_swept(claim_id, claim, "clamp")
    lv = _levels(df, "clamp")
    bad = arm(df, "Without clamping", lv == "none", ("diverged",))
    good = arm(df, "with the seed's clamp", lv == "clamp", ("diverged",))
    text = f"{bad.text('diverged')}; {good.text('diverged')}."
    dead = int(((lv == "clamp") & (df["outcome"] == "stalled")).sum())
    if dead:
        text += (f" But with clamping, {dead} of {good.n} runs stalled (D saturated and the clamp zeroed every "
                 f"gradient): the clamp trades the NaN for a dead D.")
    if (lv == "logits").any():
        text += " " + arm(df, "With stable logits", lv == "logits", ("diverged",)).text("diverged") + "."
    cond = by_other_keys(data, df, "clamp", "none", "clamp", ("diverged",), "diverged")
    return verdict(claim_id, claim, bad, good, f"{text} {cond}")


def _clip(data: StudyData, df: pd.DataFrame, claim_id: str) -> ClaimVerdict:
    """Runs without gradient clipping against clipped runs, on how often they diverge, with D's peak
    gradient norm in each."""
    claim = BY_ID[claim_id].text
    key = next((k for k in ("clip_d", "clip_g") if k in data.swept), None)
    if key is None:
        return not_swept(claim_id, claim, "clipping")
    lv = _levels(df, key)
    off = lv == "off"
    bad = arm(df, "Without clipping", off, ("diverged",))
    good = arm(df, "with clipping", ~off, ("diverged",))
    peak = numeric(df, "grad_d_peak")
    text = f"{bad.text('diverged')}; {good.text('diverged')}."
    if peak.notna().any() and off.any() and (~off).any():
        text += (f" Median peak pre-clip norm of D's gradient: {peak[off].median():.3g} unclipped vs "
                 f"{peak[~off].median():.3g} clipped.")
    base = str(baseline_value(data, key)) if key in data.swept else "1.0"
    cond = by_other_keys(data, df, key, "off", base, ("diverged",), "diverged")
    return verdict(claim_id, claim, bad, good, f"{text} {cond}")


def _schedule_arms(df: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Masks: D trains faster (a fixed k > 1), D and G at one update each (fixed k = 1), the seed's
    adaptive rule."""
    schedule = df["schedule"].astype(str) if "schedule" in df else pd.Series("fixed", index=df.index)
    k = numeric(df, "d_steps").fillna(1)
    fixed = schedule == "fixed"
    return fixed & (k > 1), fixed & (k == 1), schedule == "adaptive"


def _overpowered(data: StudyData, df: pd.DataFrame, claim_id: str) -> ClaimVerdict:
    """D trained k > 1 times per G update against once: how often D wins (loss ~0, D(G(z)) ~0,
    sealed), which is what the seed says then stays and kills training."""
    claim = BY_ID[claim_id].text
    faster, even, adaptive = _schedule_arms(df)
    if not faster.any():
        return ClaimVerdict(claim_id, claim, "not tested", "This study has no arm where D trains faster (a fixed d_steps > 1).")
    k = int(numeric(df, "d_steps")[faster].max())
    label = ("d_overpowered",)
    bad = arm(df, f"With D trained {k} times per G update", faster, label)
    good = arm(df, "with one D update per G update", even, label)
    what = "ended with D overpowered (loss ~0 and D(G(z)) ~0, sustained)"
    text = f"{bad.text(what)}; {good.text('did')}."
    if adaptive.any():
        text += " " + arm(df, "Under the seed's adaptive rule", adaptive, label).text("did") + "."
    lost = df[faster & df["outcome"].isin(FAILURES)]
    if len(lost):
        text += f" Outcomes with D faster: {', '.join(f'{o} {c}' for o, c in lost['outcome'].value_counts().items())}."
    return verdict(claim_id, claim, bad, good, text)


def _adaptive(data: StudyData, df: pd.DataFrame, claim_id: str) -> ClaimVerdict:
    """The seed's adaptive D/G rule (capped inner G loop) against one D and one G update per batch,
    on how many runs fail."""
    claim = BY_ID[claim_id].text
    faster, even, adaptive = _schedule_arms(df)
    if not adaptive.any() or not even.any():
        return ClaimVerdict(claim_id, claim, "not tested", "This study does not run the adaptive rule beside a fixed k = 1.")
    cap = numeric(df, "g_loop_cap")
    seed_rule = adaptive & (cap == cap[adaptive].min())  # the tightest cap stands in for the seed's bounded loop
    bad = arm(df, "With a fixed schedule (k = 1)", even, FAILURES)
    good = arm(df, f"with the seed's adaptive rule (inner G loop capped at {int(cap[seed_rule].min())})",
                seed_rule, FAILURES)
    text = f"{bad.text('failed')}; {good.text('failed')}."
    uncapped = adaptive & ~seed_rule
    if uncapped.any():
        text += " " + arm(df, f"With the inner loop capped at {int(cap[uncapped].max())}", uncapped,
                           FAILURES).text("failed") + "."
    capped = numeric(df, "g_capped")[seed_rule]
    if capped.notna().any():
        text += f" The inner G loop hit its cap on {int(capped.sum())} batches in all (the seed's loop has no cap)."
    return verdict(claim_id, claim, bad, good, text)


def _lr(data: StudyData, df: pd.DataFrame, claim_id: str) -> ClaimVerdict:
    """Results poor at the smallest lr (runs that did not succeed, and their FLD and legibility, against the
    best lr measured), and the losses' magnitudes there against the best lr's."""
    claim = BY_ID[claim_id].text
    key = next((k for k in ("lr_d", "lr_g") if k in data.swept), None)
    if key is None:
        return not_swept(claim_id, claim, "the learning rate")
    lv = _levels(df, key)
    numeric_lr = pd.to_numeric(df[key])
    smallest = lv[numeric_lr == numeric_lr.min()].iloc[0]
    others = lv[lv != smallest]
    if others.empty:
        return ClaimVerdict(claim_id, claim, "not tested", "Only one learning rate was run.")
    # best measured: the most successes, then the lowest median FLD (never simply the first level)
    ranked = df[lv != smallest].assign(_lv=others, _ok=df["outcome"] == "success",
                                        _fld=numeric(df, "final_fld")).groupby("_lv")
    best = min(ranked.groups, key=lambda level: (-ranked.get_group(level)["_ok"].mean(),
                                                 ranked.get_group(level)["_fld"].median()))
    seed_lr = baseline_value(data, key)
    named = f"{best}, the seed's own" if seed_lr is not None and same(best, seed_lr) else best
    bad = arm(df, f"At the smallest lr ({smallest})", lv == smallest, FAILURES)
    good = arm(df, f"at the best lr measured ({named})", lv == best, FAILURES)
    status, why, need, carried = combine(bad, good, differences(df, lv == smallest, lv == best))

    def absmean(col: str, mask) -> float:
        return numeric(df, col)[mask].abs().mean()

    small_l = (absmean("last_loss_d", lv == smallest), absmean("last_loss_g", lv == smallest))
    best_l = (absmean("last_loss_d", lv == best), absmean("last_loss_g", lv == best))
    labels = df.loc[lv == smallest, "outcome"].value_counts()
    text = (f"{bad.text('did not succeed')} ({', '.join(f'{k} {v}' for k, v in labels.items())}); "
            f"{good.text('did not')}. |loss_d| and |loss_g| at the end: {small_l[0]:.3g} and {small_l[1]:.3g} at the "
            f"smallest lr vs {best_l[0]:.3g} and {best_l[1]:.3g} at {best}.")
    higher = small_l[0] > best_l[0] and small_l[1] > best_l[1]
    open_ = ""
    if status == "supported" and not higher:
        status, why = "inconclusive", why + (", but the losses are not higher at the small lr, as the seed says they "
                                             "are (the poor results are supported, the high losses are not)")
        open_ = "half: the results are poor, the losses not higher"
    return ClaimVerdict(claim_id, claim, status, concluded(text, f"{why} (carried by {carried})"), (bad, good),
                        need, open_)


def _freeze(data: StudyData, df: pd.DataFrame, claim_id: str) -> ClaimVerdict:
    """Runs that freeze G with eval() only against requires_grad_(False), on how many still computed
    gradients for the frozen G, with their speed and the stale gradient that leaked into G's update."""
    claim = BY_ID[claim_id].text
    if "freeze" not in data.swept:
        return not_swept(claim_id, claim, "freeze")
    lv = _levels(df, "freeze")
    ev, rg = lv == "eval_only", lv == "requires_grad"
    wasted = numeric(df, "last_frozen_grad_g")
    speed = numeric(df, "samples_per_s")
    trials = df["trial"].astype(int)
    bad = Arm("With only eval()", int((wasted[ev] > 0).sum()), int(ev.sum()), tuple(trials[ev]))
    good = Arm("with requires_grad_(False)", int((wasted[rg] > 0).sum()), int(rg.sum()), tuple(trials[rg]))
    status, why, need = decide(bad, good)
    text = f"{bad.text('still computed gradients for the frozen G')}; {good.text('did')}."
    ratio = speed[ev].mean() / speed[rg].mean() if speed[ev].notna().any() and speed[rg].notna().any() else None
    if ratio is not None and abs(ratio - 1) > 1e-9:  # equal when both arms trained in one population
        text += f" Training speed: {ratio:.2f}x of the requires_grad_(False) runs."
    if "zero_grad" in data.swept:
        z = _levels(df, "zero_grad")
        leak = numeric(df, "last_leak_g")
        mask = ev & (z == "own_after_step")
        if mask.any():
            text += (f" Combined with clearing only its own gradients, the stale gradient leaked into G's update in "
                     f"{int((leak[mask] > 0).sum())} of {int(mask.sum())} runs; their success rate was "
                     f"{(df.loc[mask, 'outcome'] == 'success').mean():.0%} vs "
                     f"{(df.loc[~mask, 'outcome'] == 'success').mean():.0%} otherwise.")
    return ClaimVerdict(claim_id, claim, status, concluded(text, why), (bad, good), need)


def _span(values: pd.Series) -> str:
    lo, hi = int(values.min()), int(values.max())
    return f"epoch {lo}" if lo == hi else f"epochs {lo} to {hi}"


def _plain(x) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def _arm_detail(df: pd.DataFrame, mask: pd.Series) -> str:
    """An arm's runs in a few numbers: outcomes with the epoch each was decided, the inner G loop's capped
    and hung phases and its longest one, final FLD and legibility."""
    g = df[mask]
    parts = []
    for label, rows in g.groupby("outcome", sort=False):
        epochs = numeric(rows, "outcome_epoch").dropna()
        parts.append(f"{label} {len(rows)}" + (f" (decided at {_span(epochs)})" if len(epochs) else ""))
    loop = []
    for col, what in (("g_capped", "G phases capped"), ("g_hung", "hung"), ("g_phase_max", "longest G phase")):
        v = numeric(g, col).dropna() if col in g else pd.Series(dtype=float)
        if len(v) and v.max() > 0:
            loop.append(f"{what} {_plain(float(v.max())) if col != 'g_capped' else f'{int(v.sum()):,}'}"
                        + (" steps" if col == "g_phase_max" else ""))
    fld, leg = numeric(g, "final_fld"), numeric(g, "final_legible")
    q = ([f"FLD {fld.median():.0f}"] if fld.notna().any() else []) + (
        [f"{leg.median():.0%} legible"] if leg.notna().any() else [])
    return ", ".join(parts) + (f"; {', '.join(loop)}" if loop else "") + (f"; {', '.join(q)}" if q else "")


def _steps_and_data(df: pd.DataFrame, mask: pd.Series) -> str:
    """An arm's longest run in steps and the images it trained on: the seed's budget is steps of MNIST's 60,000
    training images, and a smaller split shows fewer distinct images more often (stores before the runner kept
    steps and train_images say nothing)."""
    from gan_core.data import MNIST_TRAIN_IMAGES

    steps, images = numeric(df, "steps")[mask].dropna(), numeric(df, "train_images")[mask].dropna()
    if not len(steps) or not len(images):
        return ""
    n, batch = int(images.max()), numeric(df, "batch_size")[mask].max()
    of = f" of {int(batch)}" if pd.notna(batch) else ""
    text = f"{int(steps.max()):,} steps{of} on {n:,} training images"
    mnist = df.loc[mask, "dataset"].isin(("mnist", "mnist-10k")).all() if "dataset" in df else False
    if mnist and n < MNIST_TRAIN_IMAGES:
        text += (f", {MNIST_TRAIN_IMAGES / n:.1f} times fewer distinct images than MNIST's {MNIST_TRAIN_IMAGES:,} "
                 f"the seed trained on")
    return f" Its runs trained up to {text}."


def _headline(data: StudyData, df: pd.DataFrame, claim_id: str) -> ClaimVerdict:
    """The headline under the declared readings (gan_core.readings): the most literal reading of every
    swept choice, and each single change from it. The literal reading reproduces the headline when its
    success rate's 95% interval lies above one half, and fails to when below; each other reading is named
    as holding the headline (all its runs succeed), refuting it (none do) or split; the readings this
    study did not vary are named as not run."""
    from gan_core.readings import LITERAL, READINGS

    claim = BY_ID[claim_id].text
    swept = [k for k in data.swept if k in df]
    literal = {k: LITERAL.get(k) for k in swept}

    def reading(row: pd.Series) -> str:
        return ", ".join(f"{k} = {_plain(row[k])}" for k in swept
                         if literal[k] is not None and str(_plain(row[k])).lower() != literal[k])

    changed = df.apply(reading, axis=1) if swept else pd.Series("", index=df.index)
    lit_mask = changed == ""
    runs = arm(df, "The most literal reading", lit_mask, FAILURES)  # k: runs that failed
    not_run = [r.key for r in READINGS if r.literal is not None and r.key not in swept]
    untried = f" Not varied here (each run in one reading only): {', '.join(not_run)}." if not_run else ""
    if not runs.n:
        return ClaimVerdict(claim_id, claim, "not tested",
                            "The most literal reading (gan_core/readings.py) has no finished runs yet." + untried)
    low, high = wilson(runs.n - runs.k, runs.n)  # the success rate's interval
    trained = numeric(df, "epochs_trained")[lit_mask]
    budget = numeric(df, "epochs")[lit_mask].max() if "epochs" in df else trained.max()
    stopped = trained[trained < budget]
    within = f"within its budget of {int(budget)} epochs" + (
        f" ({len(stopped)} ended early, at {_span(stopped)})" if len(stopped) else "")
    text = (f"{runs.name}, {runs.n - runs.k} of {runs.n} runs succeeded {within} (95% CI {fmt_ci(low, high)}): "
            f"{_arm_detail(df, lit_mask)}.{_steps_and_data(df, lit_mask)}")
    arms = [runs]
    holds, refutes, split = [], [], []
    for name in dict.fromkeys(changed[~lit_mask]):
        mask = changed == name
        other = arm(df, f"With {name}", mask, FAILURES)
        arms.append(other)
        ok = other.n - other.k
        (holds if other.k == 0 else refutes if ok == 0 else split).append(f"{name} ({ok} of {other.n} succeeded)")
        text += f" {other.name}: {_arm_detail(df, mask)}."
    measured, on_bar = against_bar(df, lit_mask, Thresholds.from_stored(data.thresholds))
    if runs.n < MIN_RUNS:
        status, why, need = ("inconclusive", f"too few runs of the most literal reading for a verdict: at least "
                             f"{MIN_RUNS} seeds (the full profile runs 4)", MIN_RUNS)
    elif low > 0.5 and measured != "contradicted":
        status, why, need = "supported", "the most literal reading reproduces the headline at its budget", None
    elif high < 0.5 and measured != "supported":
        status, why, need = "contradicted", "the most literal reading does not reproduce the headline at its budget", None
    elif measured is not None and 0.5 <= high and low <= 0.5:  # the rates cannot tell: the measures can
        status, need = measured, None
        why = (f"the success rate cannot tell, but the measures say the most literal reading "
               f"{'reproduces' if measured == 'supported' else 'does not reproduce'} the headline at its budget")
    else:
        status, why, need = "inconclusive", "cannot tell yet whether most runs of the literal reading succeed", None
    if on_bar:
        why += f" ({on_bar})"
    named = ([f"readings that hold the headline: {'; '.join(holds)}"] if holds else []) + (
        [f"readings that refute it: {'; '.join(refutes)}"] if refutes else []) + (
        [f"readings split: {'; '.join(split)}"] if split else [])
    why += f" (95% CI of the literal reading's success rate {fmt_ci(low, high)})" + (
        f"; {'; '.join(named)}" if named else "")
    return ClaimVerdict(claim_id, claim, status, concluded(text, why) + untried, tuple(arms), need)


JUDGES: dict[str, Callable[[StudyData, pd.DataFrame, str], ClaimVerdict]] = {
    "1": _clamp, "2": _clip, "3": _overpowered, "4": _lr, "5": _freeze, "adaptive": _adaptive, "headline": _headline}
"""The pitfall claims' judges (and the adaptive rule's and the headline's)."""
