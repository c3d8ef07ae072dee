"""Rich output shared by the commands: one console each for stdout and stderr, and epoch lines."""

from __future__ import annotations

import math

from rich.console import Console

from gan_core.records import EpochEvent

out = Console()
err = Console(stderr=True)


def fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}g}"


def fmt_duration(seconds: float) -> str:
    """1h02m, 4m05s or 12s."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def epoch_line(ev: EpochEvent, markup: bool = True) -> str:
    """One line per epoch: losses, D(x), D(G(z)), G steps, and quality when measured."""
    r = ev.record
    line = (f"loss_d {fmt(r.loss_d)}  loss_g {fmt(r.loss_g)}  D(x) {fmt(r.d_real)}  "
            f"D(G(z)) {fmt(r.d_fake)}  G steps {r.g_steps}")
    if r.quality is not None:
        line += f"  FLD {r.quality.fld:.0f}  classes {r.quality.classes:.1f}  legible {r.quality.legible:.0%}"
    if ev.verdict is not None:
        line += f"  [bold]{ev.verdict.label}[/bold]" if markup else f"  {ev.verdict.label}"
    return line
