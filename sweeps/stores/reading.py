"""Stores opened for reading (reports, the atlas): which studies an Optuna store holds and their sizes,
each one loaded on demand, and the curves and sample grids of MLflow runs; a store that holds none is
never created. The report and the atlas are handed these and never open a store themselves."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pandas as pd

from gan_core.files import read_plain
from sweeps.stores.storage import open_storage, study_names
from sweeps.urls import mask


@dataclass(frozen=True)
class StoredStudies:
    """The studies of one Optuna store."""

    shown: str
    """Where they were read, password masked."""
    sizes: dict[str, int]
    """Each stored study's name and its number of trials."""
    load: Callable[[str], optuna.Study] = field(repr=False)
    """Load one study by name."""


def open_studies(storage_url: str) -> StoredStudies:
    """Read-only: a mistyped sqlite path creates no file (it holds no studies)."""
    names = study_names(storage_url) or []
    storage = open_storage(storage_url, heartbeat=False) if names else None
    sizes = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)} if storage else {}

    def load(name: str) -> optuna.Study:
        return optuna.load_study(study_name=name, storage=storage)

    return StoredStudies(mask(storage_url), sizes, load)


@dataclass(frozen=True)
class TrackedRuns:
    """The runs of one MLflow tracking store, read on demand."""

    shown: str
    """Where they are read, password masked."""
    curves: Callable[[str, tuple[str, ...]], pd.DataFrame] = field(repr=False)
    """One run's per-epoch metrics: a column per key asked for, indexed by epoch."""
    grid: Callable[[str], bytes | None] = field(repr=False)
    """One run's last sample grid as PNG bytes, or None where it has none (it diverged before any)."""


GRID_BYTES = 16 << 20
"""The most a sample grid's PNG may weigh (a real one is about 30 kB)."""


def open_runs(tracking_uri: str) -> TrackedRuns:
    """A reader of the runs at `tracking_uri` (already checked by `tracking.for_reading`)."""
    from mlflow.tracking import MlflowClient

    from sweeps.stores import deadline
    from sweeps.urls import sqlite_path

    client = MlflowClient(tracking_uri)
    if sqlite_path(tracking_uri) is None:  # a server: every read answers within the stated time, or one line
        client = deadline.TimedClient(client, f"the tracking server {mask(tracking_uri)}")

    def curves(run_id: str, keys: tuple[str, ...]) -> pd.DataFrame:
        return pd.DataFrame({k: pd.Series({m.step: m.value for m in client.get_metric_history(run_id, k)})
                             for k in keys}).sort_index()

    def grid(run_id: str) -> bytes | None:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = client.download_artifacts(run_id, "samples.png", tmp)
            except Exception:  # noqa: BLE001 - MLflow says "no such artifact" in several exception types
                return None
            data = read_plain(Path(path), max_bytes=GRID_BYTES)
            # only a PNG of bounded size goes into a report: a link planted among the artifacts cannot put
            # any other file there
            return data if data is not None and data.startswith(b"\x89PNG\r\n\x1a\n") else None

    return TrackedRuns(mask(tracking_uri), curves, grid)
