"""`gan-sweep studies | show | run`: the built-in studies, what one sweeps, and running it."""

from __future__ import annotations

import typer
from rich.table import Table

from sweeps.commands.guard import guarded
from sweeps.console import out
from sweeps.running.plan import trial_count
from sweeps.study.pruners import PRUNERS, SAMPLER_NOTES
from sweeps.study.spec import builtin_names, load_spec


def studies() -> None:
    """List the built-in studies, one line each."""
    table = Table(box=None, show_header=True, header_style="bold")
    table.add_column("study")
    table.add_column("trials (quick)", justify="right")
    table.add_column("what it asks")
    for name in builtin_names():
        spec = load_spec(name)
        n = trial_count(*spec.for_profile("quick")) if "quick" in spec.profiles else "-"
        table.add_row(name, str(n), spec.description.split(". ")[0].rstrip("."))
    out.print(table)


def show(study: str) -> None:
    """What a study sweeps, its budget per profile, its objective."""
    spec = load_spec(study)
    out.print(f"[bold]{spec.name}[/bold]  ({spec.source})")
    out.print(spec.description)
    if spec.claims:
        from sweeps.study.claims import BY_ID

        out.print("tests the claims: " + "; ".join(f"{i}. {BY_ID[i].title}" for i in spec.claims))
    out.print(f"objective: {spec.direction} {spec.metric} of the last evaluation")
    seeded = f", seed {spec.sampler_seed}" if spec.sampler != "grid" else ""
    out.print(f"sampler: {spec.sampler} ({SAMPLER_NOTES[spec.sampler]}){seeded}", highlight=False)
    out.print(pruner_line(spec), highlight=False)
    for pname in spec.profiles:
        pspec, prof = spec.for_profile(pname)
        out.print(f"\n[bold]profile {pname}[/bold]: {trial_count(pspec, prof)} trials, {prof.epochs} epochs each"
                  + (f", at most {prof.steps_per_epoch} batches per epoch" if prof.steps_per_epoch else "")
                  + f", seeds {', '.join(map(str, pspec.seeds))}")
        if pspec.pruner is not None:
            out.print(f"  pruner {pspec.pruner.settings(prof.epochs)}", highlight=False)
        for line in pspec.describe_space():
            out.print(f"  {line}" if line.startswith("config") else f"  sweeps {line}")
        for k, v in pspec.fixed.items():
            out.print(f"  fixed  {k} = {v}")
    if spec.baseline:
        out.print("\nbaseline (the seed's setting): " + ", ".join(f"{k} = {v}" for k, v in spec.baseline.items()))
    out.print("\n[bold]readings[/bold] of what the seed leaves open (gan_core/readings.py), in this study:")
    table = Table(box=None, show_header=True, header_style="bold", padding=(0, 1))
    for col in ("key", "most literal", "here"):
        table.add_column(col)
    for key, literal, here in study_readings(spec):
        table.add_row(key, literal, here if here != literal else f"{here} (literal)")
    out.print(table)


def pruner_line(spec) -> str:
    """What `show` says of a study's pruner: none (and why, for a study of the seed's claims), or which of Optuna's
    it is and how it decides (its parameters are shown per profile)."""
    if spec.pruner is None:
        if spec.claims:
            return ("pruner: none (a study of the seed's claims keeps none: a verdict needs every run to its end "
                    "or its sealed fate)")
        return "pruner: none (every run trains to its end or its sealed fate)"
    kind = PRUNERS[spec.pruner.kind]
    return (f"pruner: {kind.name} (Optuna's {kind.optuna}): {kind.how}, at each evaluated epoch; a run it prunes "
            f"stops there and has no outcome of the judge")


def study_readings(spec) -> list[tuple[str, str, str]]:
    """(key, the most literal option, the values this study runs) for every reading, from its first profile."""
    from gan_core.config import RunConfig
    from gan_core.readings import READINGS

    pspec, _ = spec.for_profile(next(iter(spec.profiles)))
    base = RunConfig.from_flat(pspec.fixed).to_flat()
    swept = {p.name: [RunConfig.from_flat({p.name: v}).to_flat()[p.name] for v in p.values]
             for p in pspec.space if p.kind == "values"}
    swept |= {p.name: [f"{p.kind} [{p.low:g}, {p.high:g}]"] for p in pspec.space if p.kind != "values"}
    rows = []
    for r in READINGS:
        if pspec.configs is not None:
            values = [RunConfig.from_flat(pspec.fixed | c).to_flat()[r.key] for c in pspec.configs]
        else:
            values = swept.get(r.key, [base[r.key]])
        rows.append((r.key, r.literal or "-", ", ".join(dict.fromkeys(str(v).lower() for v in values))))
    return rows


def register(app: typer.Typer) -> None:
    app.command("studies", help="List the built-in studies.")(guarded(studies))
    app.command("show", help="Show what a study sweeps, its budget and objective.")(guarded(show))
