"""`gan-sweep bench`: the options, their bounds, the table (the timing itself is `running.bench`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from gan_core.device import resolve_device
from gan_core.files import write_atomic
from gan_core.population import MAX_MEMBERS
from sweeps.commands.guard import guarded
from sweeps.console import out
from sweeps.errors import UserError
from sweeps.paths import check_writable_file
from sweeps.running.bench import run_bench


def register(app: typer.Typer) -> None:
    @app.command("bench", help="Time the seed-style loop, the reference trainer and the population engine.")
    @guarded
    def bench_cmd(
        device: str = typer.Option("auto", help="cpu, cuda or auto."),
        sizes: str = typer.Option("8,32,128,512", help="Population sizes to time."),
        steps: int = typer.Option(40, help="Steps per timed block."),
        repeats: int = typer.Option(3, help="Timed blocks (the median is reported)."),
        out_file: Path = typer.Option(Path("bench.json"), "--out", help="JSON results."),
    ) -> None:
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
        result = run_bench(device, size_list, steps, repeats, log=lambda s: out.print(s))
        table = Table(title=f"gan-sweep bench on {result['device_name']} ({result['device']})", box=None)
        for col in ("engine", "members", "prec", "schedule", "ms/step", "member-steps/s", "upd", "vs (a)"):
            table.add_column(col, justify="right")
        for r in result["rows"]:
            table.add_row(r["engine"], str(r["members"]), r["precision"], r["schedule"], f"{r['ms_per_step']:.2f}",
                          f"{r['member_steps_per_s']:.0f}", f"{r['updates_per_member_step']:.1f}",
                          f"{r['ratio_vs_seed_loop']:.1f}x")
        out.print(table)
        if result["adaptive_cost_per_update_vs_fixed"] is not None:
            out.print(f"adaptive schedule: {result['adaptive_cost_per_update_vs_fixed']:.2f}x the fixed schedule's time "
                      f"per member-update (updates = 2 D updates + the G steps each member took)")
        est = result["estimate"]
        out.print(f"128-trial lr-study at the seed's budget: ~{est['minutes']:.0f} min at the best rate "
                  f"(seed-style loop: ~{est['seed_style_minutes']:.0f} min)")
        write_atomic(out_file, json.dumps(result, indent=1))
        out.print(f"written to {out_file}")
