"""Progress for long commands, readable in a terminal and in a log.

On a terminal: bars of bounded width (trials, epoch) and the latest signals on a line of their own,
so the display stays readable at 80 columns. Not on a terminal (piped to a file, CI): plain lines,
one when a trial starts, one per evaluated epoch, one when a trial ends (its configuration, outcome,
FLD, time, trials done and left, ETA), never a redrawn frame.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from rich.console import Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from sweeps.console import epoch_line, err, fmt_duration


def _plain(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _bars() -> Progress:
    return Progress(TextColumn("{task.description:>6}"), MofNCompleteColumn(), BarColumn(bar_width=16),
                    TimeElapsedColumn(), TextColumn("{task.fields[eta]}"), console=err)


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
        self.task = self.bars.add_task("epoch", total=epochs, eta="ETA -")
        self.t0 = time.perf_counter()

    def on_epoch(self, ev) -> None:
        if self.live:
            per_epoch = (time.perf_counter() - self.t0) / ev.record.epoch
            self.bars.update(self.task, completed=ev.record.epoch, total=ev.epochs,
                             eta=f"ETA {fmt_duration(per_epoch * (ev.epochs - ev.record.epoch))}")
            self.set_status(epoch_line(ev))
        else:
            _plain(f"epoch {ev.record.epoch}/{ev.epochs}: {epoch_line(ev)}")


class StudyClock:
    """The study's ETA from epochs trained, not trials finished: a population's trials all end in the
    same second, so a rate of trials would read "1 done, 11 left, ETA 2h" on the study's last second."""

    def __init__(self, planned: int, epochs: int, done: int, now: Callable[[], float] = time.perf_counter) -> None:
        self.now = now
        self.total = planned * epochs
        """Epochs the whole design trains (a trial that stops early counts whole once it ends)."""
        self.epochs = epochs
        self.finished = done * epochs
        self.in_hand: dict[int, int] = {}
        """Per trial in training: its epochs done."""
        self.trained_out: set[int] = set()
        """Trials in hand whose training has ended (a population records them when all its members end)."""
        self.before = self.finished
        """Epochs this invocation did not train (finished earlier, or restored from a checkpoint)."""
        self.t0 = now()

    def epoch(self, number: int, epoch: int, final: bool = False) -> None:
        """Trial `number` trained its epoch `epoch`; `final`: its last (an early stop's too)."""
        if number not in self.in_hand:
            self.before += epoch - 1  # a resumed trial's restored epochs are not this run's speed
        self.in_hand[number] = epoch
        if final:
            self.trained_out.add(number)

    def ended(self, number: int, counted: bool) -> None:
        self.in_hand.pop(number, None)
        self.trained_out.discard(number)
        if counted:
            self.finished += self.epochs

    def left(self) -> int:
        """Epochs still to train: a trial stopped early has none left, though it is recorded later."""
        unrun = sum(self.epochs - self.in_hand[n] for n in self.trained_out)
        return max(self.total - self.finished - sum(self.in_hand.values()) - unrun, 0)

    def eta(self) -> str:
        """Time to the design's end at this invocation's speed so far; 'finishing' when every trial in hand
        has trained out and is being recorded; '-' when nothing is left or no epoch ran yet."""
        trained = self.finished + sum(self.in_hand.values()) - self.before
        if not self.left():
            return "finishing" if self.in_hand else "-"
        if trained <= 0:
            return "-"
        return fmt_duration((self.now() - self.t0) / trained * self.left())


class RunDisplay(_Display):
    """`gan-sweep run` and `worker`: trials and epoch bars, outcome tallies, and plain lines in logs."""

    def __init__(self, handle, planned: int, epochs: int) -> None:
        super().__init__()
        from sweeps.stores.storage import counts

        c = counts(handle.study)
        self.planned = planned
        self.done = c.get("COMPLETE", 0) + c.get("PRUNED", 0)
        self.clock = StudyClock(planned, epochs, self.done)
        self.started: dict[int, tuple[float, str]] = {}
        self.tally: dict[str, int] = {}
        self.trials = self.bars.add_task("trials", total=planned, completed=self.done, eta="ETA -")
        self.epoch = self.bars.add_task("epoch", total=epochs, eta="")

    def _eta(self) -> str:
        return self.clock.eta()

    def on_start(self, prep) -> None:
        what = ", ".join(f"{k}={v}" for k, v in prep.params.items()) + f", seed {prep.cfg.seed}"
        self.started[prep.trial.number] = (time.perf_counter(), what)
        if not self.live:
            _plain(f"trial #{prep.trial.number} started ({what}); {self.done} of {self.planned} done")

    def on_epoch(self, number: int, ev) -> None:
        self.clock.epoch(number, ev.record.epoch, ev.final)
        if self.live:
            self.bars.update(self.epoch, completed=ev.record.epoch, total=ev.epochs)
            self.bars.update(self.trials, eta=f"ETA {self._eta()}")
            self.set_status(f"#{number} {epoch_line(ev)}")
        elif ev.record.quality is not None or ev.verdict is not None:
            _plain(f"  #{number} epoch {ev.record.epoch}/{ev.epochs}: {epoch_line(ev, markup=False)}; "
                   f"study ETA {self._eta()}")

    def on_pruned(self, number: int, epoch: int) -> None:
        """The study's pruner stopped trial `number` at `epoch` (its line comes with its population's end)."""
        self.clock.epoch(number, epoch, final=True)
        if not self.live:
            _plain(f"  #{number} pruned at epoch {epoch} by the study's pruner; study ETA {self._eta()}")

    def on_trial(self, number: int, label: str, fld: float | None = None) -> None:
        counted = label not in ("FAIL", "superseded")
        if counted:
            self.done += 1
        self.clock.ended(number, counted)
        self.tally[label] = self.tally.get(label, 0) + 1
        t, what = self.started.pop(number, (time.perf_counter(), ""))
        fld_text = "" if fld is None else f", FLD {fld:.1f}"
        left = max(self.planned - self.done, 0)
        self.say(f"trial #{number} {label}{fld_text} in {fmt_duration(time.perf_counter() - t)} ({what}); "
                 f"{self.done} done, {left} left, ETA {self._eta()}")
        if self.live:
            self.bars.update(self.trials, completed=self.done, eta=f"ETA {self._eta()}")
            self.bars.update(self.epoch, completed=0)
            self.set_status("  ".join(f"{k} {v}" for k, v in sorted(self.tally.items())))
