"""`gan-sweep atlas`: the command (the page itself is built by sweeps.report.atlas, imported lazily)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from sweeps.commands.guard import guarded
from sweeps.errors import UserError
from sweeps.study.claims import BY_ID, CLAIMS
from sweeps.study.defaults import DEFAULT_STORAGE, DEFAULT_TRACKING_URI

HEADLINE_STUDY = BY_ID["headline"].study
CURES_STUDY = BY_ID["spectral_norm"].study


def _claims(text: str | None) -> tuple[str, ...]:
    if not text:
        return tuple(c.id for c in CLAIMS)
    ids = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [i for i in ids if i not in BY_ID]
    if bad or not ids:
        raise UserError(f"--claims: unknown claim {', '.join(bad) or repr(text)} (known: {', '.join(BY_ID)})")
    return ids


def to_run(claim_ids: tuple[str, ...], headline: bool, cures: bool = False) -> list[str]:
    """The built-in studies `--run` may run, in the atlas's order (the headline's and the cures' only
    when asked: hours, and most of an hour, on a CPU)."""
    asked = {"pitfall": True, "headline": headline, "cure": cures}
    return list(dict.fromkeys(BY_ID[i].study for i in claim_ids if asked[BY_ID[i].group]))


def atlas(storage: str, tracking_uri: str, out_dir: Path, profile: str | None, run: bool, run_headline: bool,
          device: str | None, checkpoint_dir: Path, claims: str | None, run_cures: bool = False) -> None:
    from sweeps import paths, urls
    from sweeps.console import err, out
    from sweeps.running.plan import RunOptions, default_profile, resolve
    from sweeps.stores.storage import study_names
    from sweeps.stores.tracking import for_reading
    from sweeps.urls import mask

    ids = _claims(claims)
    if profile is not None and profile not in ("quick", "full"):
        raise UserError(f"--profile must be quick or full, got {profile!r}")
    paths.check_writable_dir(out_dir, "--out")
    folder = paths.under(out_dir, "atlas")
    paths.check_writable_dir(out_dir / "atlas", "--out", inside=paths.ATLAS_FOLDERS)
    urls.check_storage(storage)
    urls.check_tracking(tracking_uri)
    for flag, given in (("--run-headline", run_headline), ("--run-cures", run_cures)):
        if given and not run:
            raise UserError(f"{flag} needs --run")
    runs: list = []
    if run:
        prof = profile or default_profile(device)
        runs = [RunOptions(s, prof, device=device, storage=storage, tracking_uri=tracking_uri, out_dir=out_dir,
                           checkpoint_dir=checkpoint_dir) for s in to_run(ids, run_headline, run_cures)]
        from sweeps.stores.storage import stored_with_other_budget

        for opts in runs:  # every study is checked before the first one starts
            r = resolve(opts)
            if stored_with_other_budget(r, storage):
                raise UserError(f"{r.name} in {mask(storage)} was run with another budget or space than "
                                f"{opts.study}'s {prof} profile has now; use another --storage (or delete that "
                                f"study) to run it afresh")
        profile = prof
    elif study_names(storage) is None:
        raise UserError(f"no gan-sweep storage at {mask(storage)}: run the studies first, or pass --run")
    else:
        for_reading(storage, tracking_uri)  # refused before the atlas reads anything

    if runs:
        from sweeps.commands.session import execute
        from sweeps.stores.storage import study_names as names_now

        started = time.perf_counter()
        for opts in runs:
            existing = names_now(storage) or []
            err.print(f"atlas: {opts.study} ({opts.profile} profile)"
                      + (" resumes" if f"{opts.study}-{opts.profile}" in existing else " runs"))
            execute(opts, create=True)  # a finished study resumes with nothing to do
        err.print(f"atlas: studies ran in {time.perf_counter() - started:.0f} s")

    from sweeps.report import atlas as A
    from sweeps.stores.reading import open_runs, open_studies

    readable = for_reading(storage, tracking_uri)  # no MLflow store is created or altered by reading
    runs = open_runs(readable) if readable else None
    page = A.build(open_studies(storage), runs, profile, ids)
    A.write_study_reports(page, runs, out_dir)
    files = A.write(page, folder)
    from rich.table import Table

    t = Table(title="the seed's claims", box=None, header_style="bold")
    t.add_column("claim", max_width=38)
    t.add_column("verdict", no_wrap=True)
    t.add_column("runs", justify="right")
    t.add_column("settle with", max_width=24)
    for r in page.rows:
        t.add_row(f"{r.claim.id}. {r.claim.title}", r.verdict.status, str(r.runs), r.settle or "-")
    out.print(t)
    out.print(f"{page.decided} of 6 pitfall verdicts decided; {len(page.findings)} finding(s) no claim covers")
    out.print(f"atlas: {files['html']} (also {files['md'].name}, {files['csv'].name})", soft_wrap=True)


def register(app: typer.Typer) -> None:
    @app.command("atlas", help="One page answering every claim of the seed from the studies in storage "
                               "(<out>/atlas/atlas.html, .md, .csv); --run runs the missing studies first.")
    @guarded
    def atlas_cmd(
        storage: str = typer.Option(DEFAULT_STORAGE, help="Optuna storage URL."),
        tracking_uri: str = typer.Option(DEFAULT_TRACKING_URI, help="MLflow tracking URI (for the sample thumbnails)."),
        out_dir: Path = typer.Option(Path("reports"), "--out", help="The atlas goes to <out>/atlas/, each study's "
                                                                     "report to <out>/<study name>/."),
        profile: Optional[str] = typer.Option(None, help="Read (and with --run, run) this profile's studies; "
                                                         "default: each study's full run if stored, else quick."),
        run: bool = typer.Option(False, "--run", help="Run or finish the pitfall studies first (not the headline's "
                                                      "or the cures')."),
        run_headline: bool = typer.Option(False, "--run-headline",
                                          help=f"With --run, also run {HEADLINE_STUDY} (hours on a 2-core CPU)."),
        run_cures: bool = typer.Option(False, "--run-cures",
                                       help=f"With --run, also run {CURES_STUDY} (most of an hour on a 2-core CPU)."),
        device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:N or auto (with --run)."),
        checkpoint_dir: Path = typer.Option(Path("checkpoints"), help="Trial checkpoints (with --run)."),
        claims: Optional[str] = typer.Option(None, help="Only these claims, e.g. 1,2,adaptive "
                                                        "(default: all: 1-5, adaptive, headline, the cures)."),
    ) -> None:
        atlas(storage, tracking_uri, out_dir, profile, run, run_headline, device, checkpoint_dir, claims, run_cures)
