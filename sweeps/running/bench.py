"""`gan-sweep bench`: how fast this machine trains the seed's GAN, side by side in one run.

(a) the seed's loop as its users write it: torchvision's MNIST dataset and a DataLoader, the
    seed's clamps, the well-known grad_clipping helper (whose `if norm > theta` reads the
    device), requires_grad toggling, and `.item()` on every loss for the epoch's averages;
(b) our reference trainer (whole data set on the device, no per-step host sync);
(c) the population engine at several sizes;
(e) the reference trainer with each of the field's cures on, one at a time (what a cure costs).

All three run the same model and, so that every step does the same work, one G step per
batch (the fixed schedule with k = 1; the adaptive rule's variable inner loop would make the
step counts differ). Each timing is the median of several timed blocks after a warm-up, on
the bundled data, so it runs offline and where only torch, typer and rich are installed.
Figures are ratios against (a) measured in the same process.
"""

from __future__ import annotations

import gzip
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from gan_core import precision, toggles
from gan_core.config import RunConfig
from gan_core.data import BUNDLED_MNIST, load_dataset
from gan_core.device import resolve_device
from gan_core.population import PopulationTrainer
from gan_core.probes import Probes
from gan_core.trainer import Trainer

SEED_BUDGET_STEPS = 120 * (60_000 // 64)
"""The seed's budget: 120 epochs of the 60k training split in batches of 64."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(step_block, steps: int, repeats: int, device: torch.device) -> float:
    """Median milliseconds per step over `repeats` blocks of `steps` steps (after one warm-up block)."""
    step_block(max(steps // 4, 2))
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step_block(steps)
        _sync(device)
        times.append((time.perf_counter() - t0) * 1000 / steps)
    return statistics.median(times)


# -- (a) the seed's loop, as written -----------------------------------------------------------

def grad_clipping(net: torch.nn.Module, theta: float) -> None:
    """The well-known helper the seed calls (d2l's): its `if norm > theta` is a host read."""
    params = [p for p in net.parameters() if p.requires_grad and p.grad is not None]
    norm = torch.sqrt(sum(torch.sum(p.grad ** 2) for p in params))
    if norm > theta:
        for p in params:
            p.grad[:] *= theta / norm


def seed_style(device: torch.device, steps: int, repeats: int) -> float:
    import torchvision
    from torch import nn

    class BundledMNIST(torchvision.datasets.MNIST):
        """torchvision's MNIST over the bundled test split only (it checks for all four files)."""

        resources = [r for r in torchvision.datasets.MNIST.resources if r[0].startswith("t10k")]

    root = Path(tempfile.mkdtemp(prefix="gan-sweep-bench-"))
    try:
        raw = root / BundledMNIST.__name__ / "raw"
        raw.mkdir(parents=True)
        for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
            with gzip.open(BUNDLED_MNIST / f"{name}.gz") as src, open(raw / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
        data = BundledMNIST(str(root), train=False, download=False, transform=torchvision.transforms.ToTensor())
        loader = torch.utils.data.DataLoader(data, batch_size=64, shuffle=True, drop_last=True)
        torch.manual_seed(0)
        G = nn.Sequential(nn.Linear(100, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 784),
                          nn.Sigmoid()).to(device)
        D = nn.Sequential(nn.Linear(784, 256), nn.LeakyReLU(0.2), nn.Linear(256, 1), nn.Sigmoid()).to(device)
        opt_d, opt_g = torch.optim.Adam(D.parameters(), 1e-4), torch.optim.Adam(G.parameters(), 1e-4)
        state = {"it": iter(loader), "sum_d": 0.0, "sum_g": 0.0}

        def block(n: int) -> None:
            for _ in range(n):
                try:
                    X, _ = next(state["it"])
                except StopIteration:
                    state["it"] = iter(loader)
                    X, _ = next(state["it"])
                X = X.view(len(X), -1)
                D.train(); D.requires_grad_(True)
                opt_g.zero_grad(); opt_d.zero_grad()
                X = X.to(device)
                y = torch.clamp(D(X), 1e-3, 1)
                l = -torch.log(y).mean()
                l.backward(); grad_clipping(D, 1); opt_d.step()
                state["sum_d"] += l.item()
                G.eval(); opt_g.zero_grad(); opt_d.zero_grad(); G.requires_grad_(False)
                Z = torch.randn(len(X), 100)
                y = torch.clamp(D(G(Z.to(device))), 0, 1 - 1e-3)
                l = -torch.log(1 - y).mean()
                l.backward(); grad_clipping(D, 1); opt_d.step()
                state["sum_d"] += l.item()
                D.eval(); G.train()
                G.requires_grad_(True); opt_g.zero_grad(); opt_d.zero_grad(); D.requires_grad_(False)
                Z = torch.randn(len(X), 100)
                y = torch.clamp(D(G(Z.to(device))), 0, 1 - 1e-3)
                l = torch.log(1 - y).mean()
                l.backward(); grad_clipping(G, 1); opt_g.step()
                state["sum_g"] += l.item()

        return _median_ms(block, steps, repeats, device)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- (b) the reference trainer and (c) the population ------------------------------------------

def bench_config(device: str) -> RunConfig:
    return RunConfig().replace(dataset="mnist-10k", device=device, schedule="fixed", d_steps=1)


CURES = {t.key: t.on for t in toggles.CURES}
"""Each cure at the setting cures-study uses, for the (e) rows."""


def reference(cfg: RunConfig, dataset, steps: int, repeats: int, device: torch.device) -> float:
    trainer = Trainer(cfg, dataset)
    state = {"b": 0}
    perm = torch.randperm(len(trainer.data), device=device)
    trainer.step.noise_std = cfg.cures.instance_noise  # the first epoch's

    def block(n: int) -> None:
        probes = Probes()
        B = cfg.data.batch_size
        for _ in range(n):
            b = state["b"] % trainer.steps_per_epoch
            x = trainer.data[perm[b * B:(b + 1) * B]]
            step = state["b"]
            trainer.step.batch(x, lambda draw, step=step: trainer.noise(step, draw), probes,
                               lambda slot, step=step: trainer.instance_noise(step, slot))
            state["b"] += 1
        probes.summary()  # the per-epoch read, charged to these steps
        if cfg.cures.spectral_norm or cfg.cures.g_ema:
            trainer.cure_probes()  # their epoch-end probes, charged too

    return _median_ms(block, steps, repeats, device)


def population(cfg: RunConfig, dataset, size: int, steps: int, repeats: int, device: torch.device,
               adam_impl: str = "auto") -> tuple[float, float]:
    """(ms per step of the whole population, updates per member-step: 2 D updates plus its G steps)."""
    configs = [cfg.replace(seed=i, lr_d=10 ** (-5 + 3 * i / max(size - 1, 1)), lr_g=10 ** (-5 + 3 * i / max(size - 1, 1)))
               for i in range(size)]
    pop = PopulationTrainer(configs, dataset, adam_impl=adam_impl)
    state = {"b": 0, "g": 0.0, "steps": 0}
    perm = torch.stack([torch.randperm(len(pop.data), device=device) for _ in range(size)])

    def block(n: int) -> None:
        acc = pop.new_accumulator()
        B = pop.B
        with precision.matmuls(cfg.precision, device):
            for _ in range(n):
                b = state["b"] % pop.steps_per_epoch
                pop.batch(pop.data[perm[:, b * B:(b + 1) * B]], state["b"], acc)
                state["b"] += 1
        stats = pop.summarise(acc)  # the per-epoch read, charged to these steps
        state["g"] += sum(stats["g_steps"])
        state["steps"] += n

    ms = _median_ms(block, steps, repeats, device)
    return ms, 2 + state["g"] / max(state["steps"] * size, 1)


def _row(rows: list, engine: str, members: int, ms: float, updates: float = 3.0, prec: str = "fp32",
         schedule: str = "fixed") -> dict:
    row = {"engine": engine, "members": members, "precision": prec, "schedule": schedule, "ms_per_step": ms,
           "updates_per_member_step": updates, "member_steps_per_s": members * 1000 / ms}
    row["ms_per_member_update"] = ms / (members * updates)
    rows.append(row)
    return row


def run_bench(device: str, sizes: list[int], steps: int, repeats: int, log=print,
              precisions: tuple[str, ...] | None = None, adaptive: bool = True, cures: bool = True) -> dict:
    dev = resolve_device(device)
    cfg = bench_config(str(dev))
    dataset = load_dataset("mnist-10k")
    rows: list[dict] = []
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
    log(f"bench on {dev} ({name}, {torch.get_num_threads()} threads), batch 64, the fixed schedule (one G step per "
        f"batch) unless a row says adaptive")
    a = _row(rows, "(a) seed loop", 1, seed_style(dev, steps, repeats))
    log(f"(a) seed-style loop: {a['ms_per_step']:.2f} ms/step")
    b = _row(rows, "(b) reference", 1, reference(cfg, dataset, steps, repeats, dev))
    log(f"(b) reference trainer: {b['ms_per_step']:.2f} ms/step")
    for size in sizes:
        ms, upd = population(cfg, dataset, size, max(steps // 2, 4), repeats, dev)
        r = _row(rows, "(c) population", size, ms, upd)
        log(f"(c) population of {size}: {ms:.2f} ms/step ({r['member_steps_per_s']:.0f} member-steps/s)")
    fixed_best = max((r for r in rows if r["engine"] == "(c) population"), key=lambda r: r["member_steps_per_s"])
    size = fixed_best["members"]
    if precisions is None:
        precisions = ("bf16", "tf32") if dev.type == "cuda" else ("bf16",)
    for prec in precisions:
        ms, upd = population(cfg.replace(precision=prec), dataset, size, max(steps // 2, 4), repeats, dev)
        r = _row(rows, "(c) population", size, ms, upd, prec)
        log(f"(c) population of {size} at {prec}: {ms:.2f} ms/step ({r['member_steps_per_s']:.0f} member-steps/s)")
    if cures:  # against a plain reference timed beside them (the first timing of a process runs slow)
        plain = _row(rows, "(e) reference, no cure", 1, reference(cfg, dataset, steps, repeats, dev))
        for key, value in CURES.items():
            ms = reference(cfg.replace(**{key: value}), dataset, steps, repeats, dev)
            r = _row(rows, f"(e) reference + {key}", 1, ms)
            log(f"(e) reference trainer with {key} = {value}: {ms:.2f} ms/step, "
                f"{ms / plain['ms_per_step']:.2f}x the plain reference's ({plain['ms_per_step']:.2f})")
    if adaptive:  # the seed's adaptive rule: inner G loops of different lengths per member
        seed_cfg = cfg.replace(schedule="adaptive")
        ms, upd = population(seed_cfg, dataset, size, max(steps // 2, 4), repeats, dev)
        r = _row(rows, "(d) population", size, ms, upd, schedule="adaptive")
        log(f"(d) population of {size}, adaptive schedule: {ms:.2f} ms/step, {upd:.1f} updates per member-step, "
            f"{r['ms_per_member_update'] / fixed_best['ms_per_member_update']:.2f}x the fixed schedule's cost per update")
    for r in rows:
        r["ratio_vs_seed_loop"] = r["member_steps_per_s"] / rows[0]["member_steps_per_s"]
    best = max((r for r in rows if r["schedule"] == "fixed"), key=lambda r: r["member_steps_per_s"])
    minutes_128 = 128 * SEED_BUDGET_STEPS / best["member_steps_per_s"] / 60
    adaptive_row = next((r for r in rows if r["schedule"] == "adaptive"), None)
    return {
        "device": str(dev), "device_name": name,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "steps": steps, "repeats": repeats,
        "rows": rows, "best": best,
        "cure_cost_vs_reference": {r["engine"].removeprefix("(e) reference + "): r["ms_per_step"] / plain["ms_per_step"]
                                   for r in rows if r["engine"].startswith("(e) reference +")} if cures else {},
        "adaptive_cost_per_update_vs_fixed": (adaptive_row["ms_per_member_update"] / fixed_best["ms_per_member_update"]
                                              if adaptive_row else None),
        "estimate": {"what": "a full-budget 128-trial lr-study (120 epochs x 937 steps each) at the best rate",
                     "minutes": minutes_128,
                     "seed_style_minutes": 128 * SEED_BUDGET_STEPS / rows[0]["member_steps_per_s"] / 60},
    }
