"""Stored studies opened for reading (reports, the atlas): which studies a store holds and their sizes,
and each one loaded on demand; a store that holds none is never created."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import optuna

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
