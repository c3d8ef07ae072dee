"""`gan-sweep run` and `gan-sweep worker`: their options (what they do is `commands.session.execute`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sweeps.commands.session import execute
from sweeps.running.plan import MAX_TRIALS, POPULATION_CPU, POPULATION_GPU, RunOptions
from sweeps.study.defaults import DEFAULT_STORAGE, DEFAULT_TRACKING_URI


def register(app: typer.Typer) -> None:
    from sweeps.commands.guard import guarded

    common = dict(
        profile=typer.Option(None, help="quick (CPU-sized) or full (the seed's budget); default: full on a GPU, "
                                        "quick on a CPU."),
        trials=typer.Option(None, help="Run at most this many trials now (the rest later)."),
        epochs=typer.Option(None, help="Override the profile's epochs per trial."),
        seeds=typer.Option(None, help="Override the seeds, e.g. 0,1,2,3."),
        dataset=typer.Option(None, help="Override the data set (mnist, mnist-10k, fashion-mnist)."),
        device=typer.Option(None, help="cpu, cuda, cuda:N or auto."),
        storage=typer.Option(DEFAULT_STORAGE, help="Optuna storage URL (sqlite:///file.db or postgresql://...)."),
        tracking_uri=typer.Option(DEFAULT_TRACKING_URI, help="MLflow tracking URI (sqlite:///mlflow.db or http://...)."),
        study_name=typer.Option(None, help="Name in storage (default: <study>-<profile>[-<dataset>][-e<epochs>])."),
        engine=typer.Option("auto", help="auto (the population engine when a study has 2 or more trials), "
                                         "reference or population."),
        population_size=typer.Option(None, help=f"Most members per population (default {POPULATION_GPU} on a GPU, "
                                                f"{POPULATION_CPU} on a CPU, where larger ones are no faster)."),
        checkpoint_dir=typer.Option(Path("checkpoints"), help="Trial checkpoints; share it between workers so a "
                                                              "retried trial resumes."),
        heartbeat=typer.Option(20, help="Seconds between trial heartbeats for a new study (a trial silent 3x as "
                                        "long is retried); a study keeps the interval it was created with."),
        allow_large=typer.Option(False, "--allow-large", help=f"Allow a grid of more than {MAX_TRIALS:,} trials."),
    )

    def make(create: bool):
        def command(
            study: str = typer.Argument(..., help="Built-in study name (see `gan-sweep studies`) or a .toml file."),
            profile: Optional[str] = common["profile"], trials: Optional[int] = common["trials"],
            epochs: Optional[int] = common["epochs"], seeds: Optional[str] = common["seeds"],
            dataset: Optional[str] = common["dataset"], device: Optional[str] = common["device"],
            storage: str = common["storage"], tracking_uri: str = common["tracking_uri"],
            study_name: Optional[str] = common["study_name"],
            out_dir: Path = typer.Option(Path("reports"), "--out", help="Folder for the report."),
            engine: str = common["engine"], population_size: Optional[int] = common["population_size"],
            checkpoint_dir: Path = common["checkpoint_dir"], heartbeat: int = common["heartbeat"],
            allow_large: bool = common["allow_large"],
        ) -> None:
            execute(RunOptions(study, profile, trials, epochs, seeds, dataset, device, storage, tracking_uri,
                               study_name, out_dir, engine, population_size, checkpoint_dir, heartbeat,
                               allow_large), create)

        return guarded(command)

    app.command("run", help="Run or resume a study (built-in name or .toml file); a report at the end.")(make(True))
    app.command("worker", help="Join an existing study (e.g. on PostgreSQL) and run its trials until none is "
                               "left.")(make(False))
