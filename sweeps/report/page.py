"""A study's report from storage: trials.csv, report.md (+ figure PNGs) and a self-contained
report.html, with the key tables printed in the terminal."""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.markup import escape
from rich.table import Table

from sweeps.paths import REPORT_FOLDERS

from gan_core.files import make_dir, write_atomic
from gan_core.judge.labels import LABELS, LABELS_DECLARED
from sweeps.console import out
from sweeps.report.data import (
    FAIL,
    PRUNED,
    StudyData,
    median_trial,
    numeric,
)
from sweeps.report.tables import (
    best_worst,
    config_table,
    effect_table,
    outcome_table,
    pruned_table,
)
from sweeps.report.verdicts import ClaimVerdict, verdicts
from sweeps.stores.reading import TrackedRuns
from sweeps.study.claims import BY_ID


@dataclass
class Report:
    """A built report: its data, tables, verdict and figures."""

    data: StudyData
    """The trials."""
    outcome_tables: dict[str, pd.DataFrame]
    """Per swept key: outcomes per level."""
    configs: pd.DataFrame
    """Per configuration: quality over seeds."""
    effects: pd.DataFrame
    """Each level against the baseline."""
    best: pd.DataFrame
    """Best configurations."""
    worst: pd.DataFrame
    """Worst configurations."""
    verdicts: list[ClaimVerdict]
    """A verdict per claim of the seed the study tests (none for a study that tests none)."""
    pruned: pd.DataFrame = field(default_factory=pd.DataFrame)
    """The runs the study's pruner stopped, with the epoch each was pruned at (no outcome of the judge)."""
    figures: dict[str, object] = field(default_factory=dict)
    """name -> matplotlib figure."""
    notes: list[str] = field(default_factory=list)
    """Things the reader must know (partial study, crashes, missing tracking data)."""


def build(data: StudyData, runs: TrackedRuns | None) -> Report:
    """The report of one study; curves, samples and the audit sheet where its MLflow runs are given."""
    from sweeps.report import figures as F

    tables = {k: outcome_table(data, k) for k in data.swept}
    best, worst = best_worst(data)
    rep = Report(data, tables, config_table(data), effect_table(data), best, worst, verdicts(data), pruned_table(data))
    n = len(data.trials)
    done = len(data.finished)
    if data.partial:
        rep.notes.append(f"Partial: {done} of {n} trials finished; the study is still running or was stopped "
                         f"(rerun `gan-sweep run` to finish it).")
    if not rep.pruned.empty:
        rep.notes.append(f"{len(rep.pruned)} run(s) were stopped by the study's pruner ({data.spec.get('pruner')}): "
                         f"they carry no outcome of the judge, are counted in no rate, table of outcomes or verdict, "
                         f"and are listed apart with the epoch each was pruned at.")
    fails = int((data.trials["outcome"] == FAIL).sum())
    if fails:
        rep.notes.append(f"{fails} trial(s) failed (a crash or an interrupt): counted in the FAIL column, "
                         f"left out of the rates; their reasons are in trials.csv (evidence).")
    rep.figures["outcome_by_param"] = F.outcome_by_param(data)
    rep.figures["outcome_counts"] = F.outcome_counts(data, tables)
    rep.figures["effects"] = F.effects(rep.effects)
    if rep.figures["effects"] is None and data.swept:
        rep.notes.append("No effects figure: no swept key has runs at its baseline (the seed's setting) yet, so "
                         "there is nothing to compare against.")
    if runs is not None:
        try:
            histories, grids = _from_mlflow(data, runs)
            outcomes = dict(zip(data.trials["mlflow_run_id"], data.trials["outcome"]))
            rep.figures["curves_by_outcome"] = F.curves_by_outcome(histories, outcomes)
            rep.figures["samples"] = samples_figure(data, grids)
            rep.figures["audit_sheet"] = audit_sheet(data, grids)
        except Exception as exc:  # noqa: BLE001 - the tables stand without MLflow's curves
            from sweeps.urls import mask

            rep.notes.append(f"MLflow data unavailable ({type(exc).__name__}: {mask(str(exc))[:160]}); curves, samples "
                             f"and the audit sheet left out.")
    rep.figures = {k: v for k, v in rep.figures.items() if v is not None}
    return rep


def _from_mlflow(data: StudyData, runs: TrackedRuns):
    """Per-epoch curves and the last sample grid of every finished run."""
    import matplotlib.image as mpimg

    df = data.finished.dropna(subset=["mlflow_run_id"])
    histories, grids = {}, {}
    for trial, run_id in zip(df["trial"], df["mlflow_run_id"]):
        histories[run_id] = runs.curves(run_id, ("loss_d", "loss_g", "d_real", "d_fake"))
        png = runs.grid(run_id)
        if png is not None:
            grids[int(trial)] = mpimg.imread(io.BytesIO(png), format="png")
    return histories, grids


def typical_trials(data: StudyData) -> dict[str, pd.Series]:
    """Per label that occurred, its typical trial: the one whose final objective is the median of
    that label's (not the most flattering one)."""
    df = data.finished
    return {label: median_trial(df[df["outcome"] == label], data.metric) for label in LABELS
            if (df["outcome"] == label).any()}


def samples_figure(data: StudyData, grids: dict[int, object]):
    """The typical final grid of each label, titled with its counts and numbers."""
    counts = data.finished["outcome"].value_counts()
    shown = [(label, row) for label, row in typical_trials(data).items() if int(row["trial"]) in grids]
    if not shown:
        return None
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.9), squeeze=False, layout="constrained")
    for ax, (label, row) in zip(axes[0], shown):
        ax.imshow(grids[int(row["trial"])], cmap="gray")
        fld = numeric(pd.DataFrame([row]), "final_fld").iloc[0]
        ax.set_title(f"{label}: trial {int(row['trial'])}\n(typical of {counts[label]}; FLD "
                     f"{'-' if pd.isna(fld) else f'{fld:.0f}'})", fontsize=9)
        ax.axis("off")
    fig.suptitle(_fit("Final samples: the typical run of each outcome (median objective within the label)", fig, 10),
                 fontsize=10)
    return fig


AUDIT_COLUMNS = 8


def _fit(title: str, fig, fontsize: float) -> str:
    """A figure title wrapped to the figure's width (a one-column figure clipped it at both ends): about
    1.1 x fontsize points per two characters of a sans-serif text, 72 points to the inch."""
    import textwrap

    return textwrap.fill(title, width=max(20, int(fig.get_figwidth() * 72 / (0.55 * fontsize))))


def audit_sheet(data: StudyData, grids: dict[int, object]):
    """Every finished trial's final grid, small, with its label and key numbers, grouped by label:
    a person can check the judge in a minute."""
    df = data.finished
    df = df[df["trial"].astype(int).isin(grids)]
    if df.empty:
        return None
    import matplotlib.pyplot as plt

    order = {label: i for i, label in enumerate(LABELS)}
    df = df.assign(_o=df["outcome"].map(order)).sort_values(["_o", "trial"])
    cols = min(AUDIT_COLUMNS, len(df), max(4, math.ceil(math.sqrt(len(df)))))  # few trials: bigger tiles
    rows = -(-len(df) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.3 * rows + 0.4), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, (_, r) in zip(axes.flat, df.iterrows()):
        ax.imshow(grids[int(r["trial"])], cmap="gray")
        swept = " ".join(f"{r[k]}" for k in data.swept if k in r)
        nums = "  ".join(f"{name} {numeric(pd.DataFrame([r]), col).iloc[0]:{fmt}}" for name, col, fmt in
                         (("FLD", "final_fld", ".0f"), ("leg", "final_legible", ".2f"), ("cls", "final_classes", ".1f"))
                         if not pd.isna(numeric(pd.DataFrame([r]), col).iloc[0]))
        ax.set_title(f"#{int(r['trial'])} {r['outcome']}\n{swept[:28]} s{r['seed']}\n{nums}", fontsize=6.5)
    fig.suptitle(_fit("Audit sheet: every trial's final samples with the judge's label (FLD, legible share, classes)",
                      fig, 9), fontsize=9)
    return fig


# -- output ---------------------------------------------------------------------------------

def _fmt_table(df: pd.DataFrame) -> pd.DataFrame:
    out_df = df.copy()
    for col in out_df.columns:
        if col in ("success_rate", "ci_low", "ci_high"):
            out_df[col] = out_df[col].map(lambda x: "" if pd.isna(x) else f"{100 * x:.0f}%")
        elif col.startswith("success_") and out_df[col].dtype != object:
            out_df[col] = out_df[col].map(lambda x: "" if pd.isna(x) else f"{100 * x:+.0f} pts")
        elif out_df[col].dtype.kind == "f":
            out_df[col] = out_df[col].map(lambda x: "" if pd.isna(x) else f"{x:.4g}")
    return out_df


def claim_name(claim_id: str) -> str:
    """How a heading names a claim: "the seed's pitfall 3", "the adaptive G rule"."""
    return f"the seed's pitfall {claim_id}" if claim_id.isdigit() else BY_ID[claim_id].title.replace("The ", "the ", 1)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def _sections(rep: Report) -> list[tuple[str, pd.DataFrame | str]]:
    """The report's sections, in order: (title, table or text)."""
    d = rep.data
    spec = d.spec
    counts = d.trials["outcome"].value_counts()
    summary = ", ".join(f"{k} {counts[k]}" for k in LABELS + (PRUNED, FAIL, "RUNNING", "WAITING") if k in counts)
    search = "".join(f" {what}: {spec[key]}." for key, what in (("sampler", "Sampler"), ("pruner", "Pruner"))
                     if spec.get(key))
    head = (f"{spec.get('description', '')}\n\nSource: {spec.get('source', '?')}; profile {spec.get('profile', '?')}; "
            f"objective: {d.direction} {d.metric}.{search} Trials: {len(d.trials)} ({summary or 'none'}).")
    sections: list[tuple[str, pd.DataFrame | str]] = [("Study", head)]
    present = [label for label in LABELS_DECLARED if label.name in counts]
    if present:  # in a researcher's words: what a grid with that label looks like, or what happened
        sections.append(("What the labels mean", "\n".join(f"- {label.name}: {label.meaning}" for label in present)))
    if rep.notes:
        sections.append(("Notes", "\n".join(f"- {n}" for n in rep.notes)))
    for v in rep.verdicts:
        sections.append((f"Verdict on {claim_name(v.claim_id)}: {v.status}", f'{BY_ID[v.claim_id].source}: "{v.claim}"\n\n{v.sentence}'))
    for key, t in rep.outcome_tables.items():
        sections.append((f"Outcomes by {key}", t))
    if not rep.pruned.empty:
        sections.append(("Stopped by the study's pruner (no outcome of the judge)", rep.pruned))
    sections.append(("Quality per configuration (over seeds)", rep.configs))
    if not rep.effects.empty:
        sections.append(("Effect of each setting against the seed's baseline", rep.effects))
    sections.append(("Best configurations", rep.best))
    if rep.worst.empty and not rep.best.empty:  # too few configurations to name worse ones apart from the best
        sections.append(("Worst configurations", "Every configuration is already listed under Best configurations."))
    else:
        sections.append(("Worst configurations", rep.worst))
    return sections


def write(rep: Report, folder: Path) -> dict[str, Path]:
    import matplotlib.pyplot as plt

    make_dir(folder)
    files = {"csv": folder / "trials.csv", "md": folder / "report.md", "html": folder / "report.html"}
    write_atomic(files["csv"], rep.data.trials.to_csv(index=False))
    pngs = {name: _png(fig) for name, fig in rep.figures.items()}
    for fig in rep.figures.values():
        plt.close(fig)
    figures = make_dir(folder / REPORT_FOLDERS[0])
    for name, blob in pngs.items():
        write_atomic(figures / f"{name}.png", blob)

    title = f"Report: {rep.data.name}"
    md = [f"# {title}", ""]
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, content in _sections(rep):
        md += [f"## {heading}", ""]
        body.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(content, str):
            md += [content, ""]
            paras = [p for p in content.split("\n") if p.strip()]
            if paras and all(p.startswith("- ") for p in paras):  # a list in Markdown is a list in HTML too
                body.append("<ul>" + "".join(f"<li>{html.escape(p[2:])}</li>" for p in paras) + "</ul>")
            else:
                body += [f"<p>{html.escape(p)}</p>" for p in paras]
        elif content.empty:
            md += ["(no finished runs yet)", ""]
            body.append("<p>(no finished runs yet)</p>")
        else:
            shown = _fmt_table(content)
            md += [shown.to_markdown(index=False), ""]
            body.append(f"<div class='scroll'>{shown.to_html(index=False, border=0, classes='t')}</div>")
    md += ["## Figures", ""]
    body.append("<h2>Figures</h2>")
    for name, blob in pngs.items():
        caption = CAPTIONS.get(name, name.replace("_", " "))
        md += [f"![{caption}](figures/{name}.png)", "", f"*{caption}*", ""]
        body.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{base64.b64encode(blob).decode()}">'
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    write_atomic(files["md"], "\n".join(md))
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table.t{border-collapse:collapse;font-size:13px}table.t td,table.t th{border:1px solid #ccc;"
             "padding:2px 6px}table.t th{text-align:left}div.scroll{overflow-x:auto}img{max-width:100%}")
    write_atomic(files["html"], f"<!doctype html><html><head><meta charset='utf-8'>"
                             f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
                             f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
    return files


CAPTIONS = {
    "outcome_by_param": "Each run's final objective against the swept value, coloured by its outcome (runs without "
                        "a quality, such as diverged ones, sit on top).",
    "outcome_counts": "How many runs ended in each outcome, per level of each swept key.",
    "effects": "Each setting's difference in success rate from the seed's baseline, with its 95% interval.",
    "curves_by_outcome": "D's and G's losses and D(x) / D(G(z)) per epoch, one line per run, coloured by outcome.",
    "samples": "The final samples of the typical run of each outcome (the median objective within the label).",
    "audit_sheet": "Every trial's final samples with the judge's label, grouped by label: check the judge by eye.",
}
"""A sentence under each figure (a file name says nothing)."""

SHORT = {label.name: label.short for label in LABELS_DECLARED}
"""Column heads of the terminal's outcome table (80 columns); the report's files use the full labels."""


def print_summary(rep: Report) -> None:
    tables = [t for t in rep.outcome_tables.values() if not t.empty]
    # Only the labels some run earned (and success) get a column: ten label columns and a setting's values
    # do not fit 80 columns, and a column of zeros says nothing the legend does not.
    shown = [lb for lb in LABELS if lb == "success" or any(t[lb].sum() > 0 for t in tables)]
    fail = [FAIL] if any(t[FAIL].sum() > 0 for t in tables) else []
    for key, t in rep.outcome_tables.items():
        if t.empty:
            continue
        table = Table(title=f"outcomes by {key}", box=None, header_style="bold")
        for col in (key, "runs", *(SHORT[lb] for lb in shown), *fail, "rate", "95% CI"):
            table.add_column(col, justify="right", no_wrap=col in (key, "95% CI"))
        for r in t.itertuples(index=False):
            row = r._asdict()
            rate = "" if pd.isna(row["success_rate"]) else f"{100 * row['success_rate']:.0f}%"
            ci = "" if pd.isna(row["ci_low"]) else f"{100 * row['ci_low']:.0f}-{100 * row['ci_high']:.0f}%"
            table.add_row(str(row[key]), str(row["runs"]), *(str(row[lb]) for lb in shown),
                          *(str(row[FAIL]) for _ in fail), rate, ci)
        out.print(table)
    if tables:
        out.print("  " + ", ".join(f"{SHORT[k]} = {k}" for k in shown if SHORT[k] != k) + "; rate = success rate"
                  + ("" if len(shown) == len(LABELS) else "; no run earned any other label"))
    if not rep.pruned.empty:
        epochs = rep.pruned["pruned_at_epoch"].astype(int).value_counts().sort_index()
        out.print(f"pruned by the study's pruner: {len(rep.pruned)} run(s), no outcome of the judge ("
                  + ", ".join(f"{n} at epoch {e}" for e, n in epochs.items()) + ")")
    for v in rep.verdicts:
        name = claim_name(v.claim_id)
        out.print(f"[bold]{name[:1].upper() + name[1:]} ({v.status})[/bold]: {escape(v.sentence)}", highlight=False)
    for note in rep.notes:
        out.print(f"[yellow]note[/yellow]: {note}")
