"""What the report and atlas commands (and `run`, at its end) share: stored studies opened for reading,
checked first, and a study's report written and printed."""

from __future__ import annotations

from pathlib import Path

from sweeps.console import out
from sweeps.errors import UserError
from sweeps.paths import REPORT_FOLDERS, check_writable_dir, under
from sweeps.report.data import load_study_data
from sweeps.report.page import build, print_summary, write
from sweeps.stores.reading import open_runs, open_studies
from sweeps.stores.storage import study_names
from sweeps.stores.tracking import for_reading
from sweeps.urls import check_storage, mask


def report_study(name: str, storage_url: str, tracking_uri: str | None, out_dir: Path) -> dict[str, Path]:
    """Build, write and print the report of a study in storage."""
    folder = under(out_dir, name)  # a name from storage is checked like one from the command line
    check_writable_dir(out_dir / name, "--out", inside=REPORT_FOLDERS)  # no link at it or its figures
    check_storage(storage_url)
    names = study_names(storage_url)  # read-only: a mistyped sqlite path creates no file
    if names is None:
        raise UserError(f"no gan-sweep storage at {mask(storage_url)}")
    if name not in names:
        raise UserError(f"no study {name!r} in {mask(storage_url)} (studies there: {', '.join(names) or 'none'})")
    readable = for_reading(storage_url, tracking_uri)
    rep = build(load_study_data(open_studies(storage_url).load(name)), open_runs(readable) if readable else None)
    if tracking_uri and readable is None:
        rep.notes.append(f"no MLflow store at {mask(tracking_uri)}: curves, samples and the audit sheet left out.")
    files = write(rep, folder)
    print_summary(rep)
    out.print(f"report: {files['html']} (also {files['md'].name}, {files['csv'].name})", soft_wrap=True)
    return files
