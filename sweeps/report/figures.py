"""The report's figures (matplotlib, Agg): outcome and quality by parameter, curves grouped by
outcome, sample grids of the best run and of one run per failure kind, and each toggle's effect."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from gan_core.judge.labels import LABELS, LABELS_DECLARED  # noqa: E402
from sweeps.report.data import FAIL, StudyData, is_log_scale, numeric  # noqa: E402

COLORS = {label.name: label.colour for label in LABELS_DECLARED} | {FAIL: "#7f7f7f"}
"""Each outcome's colour in every figure: the labels' declared colours, grey for crashed trials."""


def _x(df: pd.DataFrame, key: str) -> tuple[np.ndarray, list[str] | None, bool]:
    """x positions for a key: numeric (log axis for learning rates) or categorical indices."""
    if is_log_scale(df[key]):
        return pd.to_numeric(df[key]).to_numpy(float), None, True
    levels = list(dict.fromkeys(df[key].astype(str)))
    return df[key].astype(str).map(levels.index).to_numpy(float), levels, False


def outcome_by_param(data: StudyData):
    """Per swept key: final objective of each run against the key's value, coloured by outcome."""
    df = data.trials[data.trials["outcome"].isin(LABELS + (FAIL,))]
    keys = [k for k in data.swept if k in df]
    if df.empty or not keys:
        return None
    metric = f"final_{data.metric}"
    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 3.6), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, key in zip(axes[0], keys):
        x, labels, log = _x(df, key)
        jitter = x * (1 + rng.uniform(-0.08, 0.08, len(x))) if log else x + rng.uniform(-0.15, 0.15, len(x))
        y = numeric(df, metric).to_numpy(float)
        top = np.nanmax(y) * 1.6 if np.isfinite(y).any() else 1.0
        y = np.where(np.isfinite(y), y, top)  # runs without a quality (diverged, crashed) sit on top
        for label in LABELS + (FAIL,):  # only outcomes that occurred get a legend entry
            m = (df["outcome"] == label).to_numpy()
            if m.any():
                ax.scatter(jitter[m], y[m], s=26, c=COLORS[label], label=label, alpha=0.85, edgecolors="none")
        if log:
            ax.set_xscale("log")
        else:
            ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
        ax.set_yscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(f"final {data.metric} (top: none measured)")
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle("Outcome and quality by parameter (each dot a run)", fontsize=10)
    fig.tight_layout()
    return fig


def outcome_counts(data: StudyData, tables: dict[str, pd.DataFrame]):
    """Stacked outcome counts per level of each swept key (only outcomes that occurred; whole runs on
    the axis; the legend beside the bars, not over them)."""
    from matplotlib.ticker import MaxNLocator

    keys = [k for k in data.swept if k in tables and not tables[k].empty]
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys) + 1.6, 3.2), squeeze=False, layout="constrained")
    for ax, key in zip(axes[0], keys):
        t = tables[key]
        bottom = np.zeros(len(t))
        for label in LABELS + (FAIL,):
            if t[label].sum() == 0:
                continue
            ax.bar(t[key].astype(str), t[label], bottom=bottom, color=COLORS[label], label=label)
            bottom += t[label].to_numpy()
        ax.set_xlabel(key)
        ax.set_ylabel("runs")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return fig


SYMLOG_ABOVE = 10.0
"""Loss panels switch to a symmetric log axis only when some loss exceeds this in magnitude."""


def curves_by_outcome(histories: dict[str, pd.DataFrame], outcomes: dict[str, str]):
    """loss_d, loss_g, D(x) and D(G(z)) per epoch, one line per run, coloured by outcome."""
    if not histories:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.4))
    seen = set()
    for run_id, h in histories.items():
        label = outcomes.get(run_id, "?")
        kw = {"color": COLORS.get(label, "k"), "alpha": 0.55, "lw": 1}
        if label not in seen:
            kw["label"] = label
            seen.add(label)
        for ax, col in zip(axes, ("loss_d", "loss_g")):
            if col in h:
                ax.plot(h.index, h[col], **kw)
        if "d_real" in h:
            axes[2].plot(h.index, h["d_real"], **kw)
            axes[2].plot(h.index, h["d_fake"], ls="--", **{k: v for k, v in kw.items() if k != "label"})
    axes[0].axhline(math.log(4), color="grey", lw=0.8, ls=":")
    for ax in axes[:2]:
        ys = [abs(y) for line in ax.get_lines() for y in line.get_ydata() if math.isfinite(y)]
        if max(ys, default=0.0) > SYMLOG_ABOVE:  # failed runs' losses reach the thousands
            ax.set_yscale("symlog", linthresh=1.0)
        # else linear: on a symlog axis, losses within (-10, 10) got one tick (10^0) or overlapping
        # five-digit labels at the data's edges (seen in headless Chromium)
    from matplotlib.ticker import MaxNLocator

    for ax, title, ylabel in zip(axes, ("loss_d (dotted: log 4, an even game)", "loss_g", "D(x) solid, D(G(z)) dashed"),
                                 ("D's loss", "G's loss", "D output")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def effects(effect: pd.DataFrame):
    """Each level's success-rate difference from the baseline, with its 95% interval."""
    if effect.empty:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(effect) + 1.2))
    names = [f"{r.key} = {r.level} (vs {r.baseline})" for r in effect.itertuples()]
    y = np.arange(len(effect))
    d = effect["success_diff"].to_numpy(float)
    err = np.vstack([d - effect["success_ci_low"].to_numpy(float), effect["success_ci_high"].to_numpy(float) - d])
    ax.errorbar(d, y, xerr=err, fmt="o", color="#333", capsize=3)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("difference in success rate vs baseline (95% CI)")
    fig.tight_layout()
    return fig
