"""`gan-sweep report`: the command (the report itself is built by sweeps.report.page, imported lazily
so that commands which need no pandas or optuna never import them)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sweeps.commands.guard import guarded
from sweeps.errors import UserError
from sweeps.study.defaults import DEFAULT_STORAGE, DEFAULT_TRACKING_URI


def resolve_study_name(study: str, profile: str | None, study_name: str | None, device: str | None = None) -> str:
    if study_name:
        return study_name
    from sweeps.running.plan import default_profile, default_study_name
    from sweeps.study.spec import SpecError, load_spec

    try:
        spec = load_spec(study)
    except (UserError, SpecError):
        return study  # not a study file or built-in: take it as the name in storage
    return default_study_name(spec.name, profile or default_profile(device))


def register(app: typer.Typer) -> None:
    @app.command("report", help="Write and print a study's report from storage (CSV, Markdown, HTML).")
    @guarded
    def report_cmd(
        study: str = typer.Argument(..., help="Built-in study name, a .toml file, or a study's name in storage."),
        profile: Optional[str] = typer.Option(None, help="quick or full (default: as `run` would choose)."),
        study_name: Optional[str] = typer.Option(None, help="The study's name in storage, if not the default."),
        storage: str = typer.Option(DEFAULT_STORAGE, help="Optuna storage URL."),
        tracking_uri: str = typer.Option(DEFAULT_TRACKING_URI, help="MLflow tracking URI (for curves and samples)."),
        out_dir: Path = typer.Option(Path("reports"), "--out", help="Reports go to <out>/<study name>/."),
    ) -> None:
        from sweeps.commands.reading import report_study

        report_study(resolve_study_name(study, profile, study_name), storage, tracking_uri, out_dir)
