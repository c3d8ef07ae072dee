"""A heartbeat: a stamp written now and every few seconds by a daemon thread while a block runs, so
another process can tell a live holder from a dead one (Optuna's trials, MLflow's parent runs)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable


@contextlib.contextmanager
def beating(stamp: Callable[[], None], interval: float, name: str):
    """Call `stamp` now and every `interval` seconds until the block ends; a stamp that fails (a store
    busy for a moment) is simply retried at the next interval."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):
                stamp()
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, daemon=True, name=name)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
