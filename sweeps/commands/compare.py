"""`gan-sweep compare GRID SEARCH`: a search study beside a grid study from storage (read only): member-epochs
spent, the best configuration each found, and whether the best region agrees (sweeps/report/compare.py)."""

from __future__ import annotations

from typing import Optional

import typer

from sweeps.commands.guard import guarded
from sweeps.study.defaults import DEFAULT_STORAGE


def compare_studies(grid: str, search: str, storage: str, markdown: bool) -> None:
    from rich.table import Table

    from sweeps.console import out
    from sweeps.errors import UserError
    from sweeps.report.compare import compare, rows
    from sweeps.report.data import load_study_data
    from sweeps.stores.reading import open_studies
    from sweeps.stores.storage import study_names
    from sweeps.urls import check_storage, mask

    check_storage(storage)
    names = study_names(storage)  # read-only: a mistyped sqlite path creates no file
    if names is None:
        raise UserError(f"no gan-sweep storage at {mask(storage)}")
    for name in (grid, search):
        if name not in names:
            raise UserError(f"no study {name!r} in {mask(storage)} (studies there: {', '.join(names) or 'none'})")
    stored = open_studies(storage)
    c = compare(load_study_data(stored.load(grid)), load_study_data(stored.load(search)))
    table = rows(c)
    if markdown:
        print(table.to_markdown(index=False))
    else:
        shown = Table(box=None, header_style="bold")
        for col in table.columns:
            shown.add_column(col)
        for r in table.itertuples(index=False):
            shown.add_row(*(str(v) for v in r))
        out.print(shown)
    if c.grid.epochs != c.search.epochs:
        out.print(f"note: the budgets per run differ ({c.grid.epochs} vs {c.search.epochs} epochs): the comparison "
                  f"asks for the same budget per run", highlight=False)
    share = f"{100 * c.share:.0f}%" if c.share == c.share else "-"
    out.print(f"search spent {c.search.member_epochs:,} member-epochs, {share} of the grid's "
              f"{c.grid.member_epochs:,}; best region {'agrees' if c.agrees else 'differs'} "
              f"({', '.join(c.keys)} snapped to the grid's levels; the grid's {c.metric} there: "
              f"{c.grid_at_region:.1f}, at its best: {c.grid.best_value:.1f})", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("compare", help="A search study beside a grid study in storage: member-epochs spent, the best "
                                 "configuration found, whether the best region agrees.")
    @guarded
    def compare_cmd(
        grid: str = typer.Argument(..., help="The grid study: a built-in name, a .toml file or its name in storage."),
        search: str = typer.Argument(..., help="The search study, likewise."),
        profile: Optional[str] = typer.Option(None, help="quick or full, for built-in names (default: as `run` "
                                                         "would choose)."),
        storage: str = typer.Option(DEFAULT_STORAGE, help="Optuna storage URL holding both."),
        markdown: bool = typer.Option(False, "--markdown", help="Print the table as Markdown (for the README)."),
    ) -> None:
        from sweeps.commands.report import resolve_study_name

        compare_studies(resolve_study_name(grid, profile, None), resolve_study_name(search, profile, None), storage,
                        markdown)
