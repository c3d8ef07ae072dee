"""`gan-sweep bench`: the options, their bounds, the table (the timing itself is `running.bench`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from sweeps.commands.guard import guarded
from sweeps.console import out
from sweeps.errors import UserError
from sweeps.paths import check_writable_file


def _short(engine: str, schedule: str) -> str:
    """A row's name that fits an 80-column table (bench.json keeps the whole one)."""
    name = engine.replace("reference", "ref").replace("population", "pop").replace(" epoch loop", " loop")
    return f"{name} ({schedule})" if schedule != "fixed" else name


def render(result: dict) -> None:
    """The bench's table and its lines (from a run, or from a bench.json read back)."""
    table = Table(title=f"gan-sweep bench on {result['device_name']} ({result['device']})", box=None)
    for col in ("row", "P", "prec", "ms/step", "spread", "steps/s", "vs (a)", "floor"):
        table.add_column(col, justify="left" if col == "row" else "right", no_wrap=True)
    for r in result["rows"]:
        floor = "-" if r["floor_share"] is None else f"{r['floor_share']:.0%}"
        table.add_row(_short(r["engine"], r["schedule"]), str(r["members"]), r["precision"], f"{r['ms_per_step']:.2f}",
                      f"{r['spread']:.0%}", f"{r['member_steps_per_s']:.0f}", f"{r['ratio_vs_seed_loop']:.1f}x", floor)
    out.print(table)
    out.print(f"floor: each row's FLOPs per member-step (gan_core/cost.py) at {result['matmul_gflops']:.0f} GFLOP/s, "
              f"the fp32 matmul rate measured in this run on the study's layer shapes; 'floor' = floor time / "
              f"measured time; spread = (max - min) / median over the rounds; steps/s = member-steps per second; "
              f"P = members")
    if result["adaptive_cost_per_update_vs_fixed"] is not None:
        out.print(f"adaptive schedule: {result['adaptive_cost_per_update_vs_fixed']:.2f}x the fixed schedule's time "
                  f"per member-update (updates = 2 D updates + the G steps each member took)")
    if result["study"]:
        st = result["study"]
        out.print(f"{st['study']}: {st['trials']} trials x {st['epochs']} epochs x {st['steps_per_epoch']} steps = "
                  f"{st['member_steps']:,} member-steps of {st['gflop_per_member_step']:.2f} GFLOP; at this run's "
                  f"rates its training, every trial to its last epoch, takes ~{st['projected_seconds'] / 60:.1f} "
                  f"min (epoch loop "
                  f"{st['loop_seconds'] / 60:.1f}, {st['evaluations']} evaluations {st['evaluation_seconds'] / 60:.1f}); "
                  f"floor {st['floor_seconds'] / 60:.1f} min: {st['times_floor']:.2f}x the floor")
        out.print(f"its optimiser streams {st['mb_optimiser_per_member_step']:.0f} MB per member-step: "
                  f"{st['optimiser_floor_seconds'] / 60:.1f} min more at {result['memory_gbs']:.0f} GB/s, the memory "
                  f"rate measured in this run; with it the floor is "
                  f"{(st['floor_seconds'] + st['optimiser_floor_seconds']) / 60:.1f} min, and the study "
                  f"{st['times_floor_with_optimiser']:.2f}x that")
    est = result["estimate"]
    out.print(f"128-trial lr-study at the seed's budget: ~{est['minutes']:.0f} min at the best rate "
              f"(seed-style loop: ~{est['seed_style_minutes']:.0f} min)")


def register(app: typer.Typer) -> None:
    @app.command("bench", help="Time the seed-style loop, the reference trainer and the population engine.")
    @guarded
    def bench_cmd(
        device: str = typer.Option("auto", help="cpu, cuda or auto."),
        sizes: str = typer.Option("8,32,128,512", help="Population sizes to time."),
        steps: int = typer.Option(40, help="Steps per timed block."),
        repeats: int = typer.Option(3, help="Interleaved rounds, each timing every row once (the median is reported)."),
        study: str = typer.Option("lr-study", help="The study whose own population row (f) times, or 'none'."),
        profile: Optional[str] = typer.Option(None, help="That study's profile (default: quick on a CPU, full on a GPU)."),
        out_file: Path = typer.Option(Path("bench.json"), "--out", help="JSON results."),
    ) -> None:
        # imported here, not at the top: `gan-sweep --help` and its usage errors then start without torch
        from gan_core.device import resolve_device
        from gan_core.files import write_atomic
        from gan_core.population import MAX_MEMBERS
        from sweeps.running.bench import run_bench

        try:
            size_list = [int(s) for s in sizes.split(",")]
        except ValueError:
            raise UserError(f"--sizes must be comma-separated integers, got {sizes!r}") from None
        if not size_list or min(size_list) < 1 or max(size_list) > MAX_MEMBERS or not 2 <= steps <= 10_000 \
                or not 1 <= repeats <= 100:
            raise UserError(f"--sizes must be from 1 to {MAX_MEMBERS:,}, --steps from 2 to 10,000 and --repeats "
                            f"from 1 to 100")
        check_writable_file(out_file, "--out")  # before the benchmark runs, not after
        resolve_device(device)
        chosen = None if study == "none" else study
        if chosen is not None:  # a study or profile that does not exist is refused before any timing
            from sweeps.running.plan import default_profile
            from sweeps.study.spec import load_spec

            load_spec(chosen).for_profile(profile or default_profile(device))
        result = run_bench(device, size_list, steps, repeats, log=lambda s: out.print(s), study=chosen, profile=profile)
        render(result)
        write_atomic(out_file, json.dumps(result, indent=1))
        out.print(f"written to {out_file}")
