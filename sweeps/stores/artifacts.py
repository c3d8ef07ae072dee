"""Files a run leaves behind: its sample grid, its loss curves and its JSON summary."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import torch

from gan_core.files import make_dir, write_atomic
from gan_core.records import EpochRecord, RunResult


def grid_pixels(samples: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 0.5):
    """[N, 1, H, W] images in [0, 1] tiled as torchvision's make_grid tiles them (`nrow` to a row, grey
    borders), as an RGB uint8 array [H', W', 3]. Written here rather than imported: `torchvision.utils`
    imports torch._dynamo, about 2 s of every run's start-up for a reshape (a test holds this to make_grid)."""
    images = samples.detach().to("cpu", torch.float32)[:, 0]
    n, h, w = images.shape
    cols = min(nrow, n)
    rows = -(-n // cols)
    grid = torch.full((rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value)
    for k in range(n):
        y, x = divmod(k, cols)
        top, left = y * (h + padding) + padding, x * (w + padding) + padding
        grid[top:top + h, left:left + w] = images[k]
    return (grid.clamp(0, 1) * 255).round().to(torch.uint8).unsqueeze(-1).expand(-1, -1, 3).numpy()


def save_grid(samples: torch.Tensor, path: Path, nrow: int = 8) -> Path:
    """A PNG of `grid_pixels(samples)`."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(grid_pixels(samples, nrow)).save(buf, format="png")
    write_atomic(path, buf.getvalue())
    return path


def loss_figure(history: list[EpochRecord], title: str = ""):
    """Losses, D(x) and D(G(z)), and pre-clip gradient norms per epoch (a matplotlib Figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r.epoch for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    axes[0].plot(epochs, [r.loss_d for r in history], label="loss_d (tmp_loss)")
    axes[0].plot(epochs, [r.loss_g for r in history], label="loss_g")
    axes[0].axhline(math.log(4), color="grey", lw=0.8, ls=":", label="log 4")
    axes[0].ticklabel_format(axis="y", style="sci", scilimits=(-4, 4))  # a runaway loss: x1e5 above, short ticks
    axes[1].plot(epochs, [r.d_real for r in history], label="D(x)")
    axes[1].plot(epochs, [r.d_fake for r in history], label="D(G(z))")
    axes[1].set_ylim(-0.02, 1.02)
    axes[2].plot(epochs, [r.grad_d for r in history], label="|grad D| pre-clip")
    axes[2].plot(epochs, [r.grad_g for r in history], label="|grad G| pre-clip")
    axes[2].set_yscale("symlog", linthresh=1e-3)
    from matplotlib.ticker import MaxNLocator

    for ax, ylabel in zip(axes, ("loss", "D output", "pre-clip gradient norm")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    # Fixed margins, not tight_layout: this figure is made once per trial, and tight_layout lays out every
    # text once more just to measure it (a quarter to a third of the figure's time). Its size and fonts are fixed, so
    # these fit any values the panels can show (a test renders extremes and checks nothing overlaps).
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.16, top=0.87 if title else 0.95, wspace=0.25)
    return fig


def _jsonable(x):
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)  # JSON has no NaN or inf; keep them readable
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def write_run(result: RunResult, folder: Path) -> dict[str, Path]:
    """Write samples.png, losses.png and summary.json into `folder` (created here)."""
    import matplotlib.pyplot as plt

    make_dir(folder)
    files = {"summary": folder / "summary.json"}
    write_atomic(files["summary"], json.dumps(_jsonable(result.summary()), indent=1))
    if result.samples is not None:
        files["samples"] = save_grid(result.samples, folder / "samples.png")
    fig = loss_figure(result.history, f"{result.verdict.label} at epoch {result.verdict.epoch}")
    files["losses"] = folder / "losses.png"
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    write_atomic(files["losses"], buf.getvalue())
    plt.close(fig)
    return files
