"""`gan-sweep calibrate`: the judge on constructed sets with known answers, as a table.

Each set (real digits, degraded digits, memorised images, missing classes, scribbles, mixtures,
blobs, noise, an untrained G; see gan_core.judge.constructed) is scored by the evaluator and labelled
by the judge, beside the label a researcher would give it. Exit code 1 when the judge disagrees on a
set whose label is not arguable.
"""

from __future__ import annotations

import typer
from rich.table import Table

from sweeps.commands.guard import guarded
from sweeps.console import err, out

COLUMNS = ("fld", "legible", "precision", "recall", "classes", "distinct", "spread")
SHORT = {"fld": "fld", "legible": "leg", "precision": "prec", "recall": "rec", "classes": "cls",
         "distinct": "dist", "spread": "spr"}
"""Column headers in the terminal, short enough for 80 columns."""


MARKDOWN_COLUMNS = (*COLUMNS, "junk", "off_data")
"""The README's table also shows the two shares that tell junk among digits (too wide for 80 columns)."""


def _cell(key: str, value: float) -> str:
    return f"{value:.0f}" if key == "fld" else f"{value:.2f}" if key != "distinct" else f"{value:.3f}"


def markdown(rows) -> str:
    """The table as Markdown (the README's calibration table)."""
    head = ["set", *MARKDOWN_COLUMNS, "judge", "expected"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        expected = r.set.expected or f"arguable: {r.set.why}"
        mark = "" if r.agrees is None else (" ✓" if r.agrees else " ✗")
        lines.append("| " + " | ".join([r.set.description, *(_cell(k, r.quality[k]) for k in MARKDOWN_COLUMNS),
                                        f"`{r.label}`{mark}", expected]) + " |")
    return "\n".join(lines)


def calibrate(dataset: str = typer.Option("mnist-10k", help="Data set whose constructed sets to score."),
              as_markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown table."),
              panel: bool = typer.Option(True, "--panel/--no-panel",
                                         help="Also score the panel of real runs labelled by eye (MNIST; ~1 min).")
              ) -> None:
    """Label constructed image sets with known answers and show where the judge agrees."""
    from gan_core.data import load_dataset
    from gan_core.judge.constructed import check
    from gan_core.judge.evaluator import Evaluator

    ds = load_dataset(dataset)
    ev = Evaluator(ds, log=err.print)
    err.print(f"evaluator: {ev.source}, {100 * ev.accuracy:.2f}% held-out accuracy")
    rows = check(ev, ds)
    if as_markdown:
        print(markdown(rows))
    else:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("set", *SHORT.values(), "judge", ""):
            table.add_column(col, justify="left" if col in ("set", "judge", "") else "right", no_wrap=True)
        for r in rows:
            mark = "?" if r.agrees is None else ("[green]ok[/]" if r.agrees else f"[bold red]expected {r.set.expected}[/]")
            table.add_row(r.set.name, *(_cell(k, r.quality[k]) for k in COLUMNS), r.label, mark)
        out.print(table)
        out.print("columns: " + ", ".join(f"{v} = {k}" for k, v in SHORT.items() if k != v) + "; ? = arguable set")
    wrong = [r.set.name for r in rows if r.agrees is False]
    decided = sum(r.agrees is not None for r in rows)
    err.print(f"constructed sets: the judge agrees on {decided - len(wrong)} of {decided} sets with a known label"
              + (f"; disagrees on: {', '.join(wrong)}" if wrong else "")
              + f" ({len(rows) - decided} arguable sets shown, not counted)", soft_wrap=True)
    if dataset == "mnist-10k" and panel:
        show_panel(ev, as_markdown)
    if wrong:
        raise typer.Exit(1)


def show_panel(ev, as_markdown: bool) -> None:
    """The judge on the panel of real runs, per half: agreement with the labels by eye."""
    from gan_core.judge import panel as P
    from gan_core.judge.outcome import label_quality

    sets = P.load()
    th = ev.thresholds()
    judged = {s.id: label_quality(ev.quality(x), th)[0] for s, x in P.iter_samples(sets)}
    counts = P.sets_by_label(sets)
    pooled = sum(len(s.twins) for s in sets)
    lines = [f"panel of real runs: {len(sets)} distinct images labelled by eye ({len(sets) + pooled} sets, twins "
             f"pooled; " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")"]
    for half in P.HALVES:
        a = P.agreement(sets, judged, half)
        lines.append(f"  {half}: success or not {a.success_agree} of {a.sets} ({a.success_share:.0%}); the failure's "
                     f"kind {a.kind_agree} of {a.kind_sets} ({a.kind_share:.0%}); {a.undecided} undecided by eye")
    for line in lines:
        (print if as_markdown else out.print)(line)


def register(app: typer.Typer) -> None:
    app.command("calibrate", help="Check the outcome judge on constructed sets with known answers.")(guarded(calibrate))
