"""Progress for long commands, readable in a terminal and in a log.

On a terminal: bars of bounded width (trials, epoch) and the latest signals on a line of their own,
so the display stays readable at 80 columns. Not on a terminal (piped to a file, CI): plain lines,
one when a trial starts, one per evaluated epoch, one when a trial ends (its configuration, outcome,
FLD, time, trials done and left, ETA), never a redrawn frame.
"""

from __future__ import annotations

import sys
import time

from rich.console import Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from sweeps.console import epoch_line, err, fmt_duration


def _plain(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _bars() -> Progress:
    return Progress(TextColumn("{task.description:>6}"), MofNCompleteColumn(), BarColumn(bar_width=16),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err)


class _Display:
    """A terminal display of bars plus one status line, or plain lines off a terminal."""

    def __init__(self) -> None:
        self.live_mode = err.is_terminal
        self.bars = _bars()
        self.status = Text("", no_wrap=True, overflow="ellipsis")
        self.live = Live(Group(self.bars, self.status), console=err, refresh_per_second=4, transient=False) \
            if self.live_mode else None

    def __enter__(self):
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self.live.__exit__(*exc)

    def say(self, markup_free: str) -> None:
        """A line that stays (a trial's end): above the live display, or plain."""
        if self.live:
            self.live.console.print(markup_free, markup=False, highlight=False)
        else:
            _plain(markup_free)

    def set_status(self, line: str) -> None:
        self.status.plain = line


class TrainDisplay(_Display):
    """`gan-sweep train`: an epoch bar and the latest signals; off a terminal, a line per epoch."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.task = self.bars.add_task("epoch", total=epochs)

    def on_epoch(self, ev) -> None:
        if self.live:
            self.bars.update(self.task, completed=ev.record.epoch, total=ev.epochs)
            self.set_status(epoch_line(ev))
        else:
            _plain(f"epoch {ev.record.epoch}/{ev.epochs}: {epoch_line(ev)}")


class RunDisplay(_Display):
    """`gan-sweep run` and `worker`: trials and epoch bars, outcome tallies, and plain lines in logs."""

    def __init__(self, handle, planned: int, epochs: int) -> None:
        super().__init__()
        from sweeps.stores.storage import counts

        c = counts(handle.study)
        self.planned = planned
        self.done = c.get("COMPLETE", 0) + c.get("PRUNED", 0)
        self.ran = 0
        self.t0 = time.perf_counter()
        self.started: dict[int, tuple[float, str]] = {}
        self.tally: dict[str, int] = {}
        self.trials = self.bars.add_task("trials", total=planned, completed=self.done)
        self.epoch = self.bars.add_task("epoch", total=epochs)

    def _eta(self) -> str:
        left = max(self.planned - self.done, 0)
        if not self.ran or not left:
            return "-"
        return fmt_duration((time.perf_counter() - self.t0) / self.ran * left)

    def on_start(self, prep) -> None:
        what = ", ".join(f"{k}={v}" for k, v in prep.params.items()) + f", seed {prep.cfg.seed}"
        self.started[prep.trial.number] = (time.perf_counter(), what)
        if not self.live:
            _plain(f"trial #{prep.trial.number} started ({what}); {self.done} of {self.planned} done")

    def on_epoch(self, number: int, ev) -> None:
        if self.live:
            self.bars.update(self.epoch, completed=ev.record.epoch, total=ev.epochs)
            self.set_status(f"#{number} {epoch_line(ev)}")
        elif ev.record.quality is not None or ev.verdict is not None:
            _plain(f"  #{number} epoch {ev.record.epoch}/{ev.epochs}: {epoch_line(ev, markup=False)}")

    def on_trial(self, number: int, label: str, fld: float | None = None) -> None:
        self.ran += 1
        if label not in ("FAIL", "superseded"):
            self.done += 1
        self.tally[label] = self.tally.get(label, 0) + 1
        t, what = self.started.pop(number, (time.perf_counter(), ""))
        fld_text = "" if fld is None else f", FLD {fld:.1f}"
        left = max(self.planned - self.done, 0)
        self.say(f"trial #{number} {label}{fld_text} in {fmt_duration(time.perf_counter() - t)} ({what}); "
                 f"{self.done} done, {left} left, ETA {self._eta()}")
        if self.live:
            self.bars.update(self.trials, completed=self.done)
            self.bars.update(self.epoch, completed=0)
            self.set_status("  ".join(f"{k} {v}" for k, v in sorted(self.tally.items())))
