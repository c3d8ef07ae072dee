"""`gan-sweep bench`: how fast this machine trains the seed's GAN, side by side in one run, and how
far each engine is from the arithmetic floor.

(a) the seed's loop as its users write it: torchvision's MNIST dataset and a DataLoader, the
    seed's clamps, the well-known grad_clipping helper (whose `if norm > theta` reads the
    device), requires_grad toggling, and `.item()` on every loss for the epoch's averages;
(b) our reference trainer's batch step (whole data set on the device, no per-step host sync);
(c) the population engine's batch step at several sizes, and at other precisions;
(d) the same with the seed's adaptive schedule (inner G loops of different lengths per member);
(e) the reference trainer with each of the field's cures on, one at a time (what a cure costs);
(f) a study's own population (the main job's, lr-study, by default) through the epoch loop the study
    runs (`PopulationTrainer.run`: data order, probes, the end-of-run grid; tracking off), and its
    evaluation at the study's cadence, from which the study's training time is projected.

Rows (a)-(e) time the default networks with one G step per batch (the fixed schedule, k = 1) so that
every step does the same work. Rows are interleaved: each repeat times every row once, in turn, so a
machine that drifts slows them alike; a row's figure is its median, and its spread (max - min over
the median) is printed. The floor: a member-step's FLOPs counted from its configuration
(`gan_core.cost`) at the matmul rate measured in the same run on the study's own layer shapes; a
row's share of the floor is floor time / measured time. Figures are ratios within one run.

The optimiser's update is memory-bound, so the study's projection also states a second floor: the
bytes Adam streams per member-step (`gan_core.cost`) at the memory rate measured in the same run.
"""

from __future__ import annotations

import gzip
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from gan_core import allocator, cost, loop, memory, precision, toggles
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


@dataclass(frozen=True)
class Timed:
    """One bench row, before it is timed."""

    engine: str
    """What runs: a label beginning with its letter, (a) to (f)."""
    members: int
    """Members trained at once (1 for the single-run engines)."""
    precision: str
    """fp32, bf16 or tf32."""
    schedule: str
    """fixed or adaptive."""
    steps: int
    """Batches in one timed block (each batch is one step of every member)."""
    block: Callable[[int], float]
    """Runs n batches; returns the G steps per member-step it took."""
    flops: float | None
    """FLOPs of one member-step at one G step per batch (gan_core.cost), where a floor applies."""


def time_interleaved(rows: list[Timed], repeats: int, device: torch.device,
                     log: Callable[[str], None] = print) -> list[dict]:
    """Warm every row up, then `repeats` rounds that each time every row once, in turn."""
    g = {id(r): [] for r in rows}
    for r in rows:
        r.block(max(r.steps // 4, 2))
    _sync(device)
    ms = {id(r): [] for r in rows}
    for k in range(repeats):
        for r in rows:
            t0 = time.perf_counter()
            g[id(r)].append(r.block(r.steps))
            _sync(device)
            ms[id(r)].append((time.perf_counter() - t0) * 1000 / r.steps)
        log(f"round {k + 1} of {repeats} timed")
    out = []
    for r in rows:
        times = ms[id(r)]
        med = statistics.median(times)
        g_per_batch = statistics.fmean(g[id(r)])
        row = {"engine": r.engine, "members": r.members, "precision": r.precision, "schedule": r.schedule,
               "ms_per_step": med, "ms_min": min(times), "ms_max": max(times),
               "spread": (max(times) - min(times)) / med, "updates_per_member_step": 2 + g_per_batch,
               "member_steps_per_s": r.members * 1000 / med, "g_steps_per_batch": g_per_batch, "flops": r.flops}
        row["ms_per_member_update"] = med / (r.members * row["updates_per_member_step"])
        out.append(row)
    return out


def matmul_rate(cfg: RunConfig, image_dim: int, members: int, device: torch.device, repeats: int = 5) -> float:
    """GFLOP/s of the matrix products a member-step is made of, measured now: every linear layer's
    forward, weight-gradient and input-gradient products, batched over `members` as the population
    engine runs them; the best of `repeats` rounds (the floor is what the machine can do)."""
    B = cfg.data.batch_size
    g, d = cost.layers(cfg, image_dim)
    gen = torch.Generator().manual_seed(0)
    mats = []
    for i, o in g + d:
        x = torch.randn(members, B, i, generator=gen).to(device)
        w = torch.randn(members, i, o, generator=gen).to(device)
        dy = torch.randn(members, B, o, generator=gen).to(device)
        mats.append((x, w, dy))
    flops = sum(3 * 2 * members * B * x.shape[2] * w.shape[2] for x, w, _ in mats)

    def once() -> None:
        for x, w, dy in mats:
            torch.bmm(x, w)
            torch.bmm(x.transpose(1, 2), dy)
            torch.bmm(dy, w.transpose(1, 2))

    once()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(4):
            once()
        _sync(device)
        best = min(best, (time.perf_counter() - t0) / 4)
    return flops / best / 1e9


def memory_rate(device: torch.device, repeats: int = 5, numbers: int = 1 << 25) -> float:
    """GB/s of a streaming update measured now (c = a + b/2 over 128 MB tensors, far past the caches:
    3 numbers moved per element, as the optimiser's bytes are counted); the best of `repeats`."""
    a, b, c = (torch.ones(numbers, device=device) for _ in range(3))
    torch.add(a, b, alpha=0.5, out=c)
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.add(a, b, alpha=0.5, out=c)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 3 * numbers * a.element_size() / best / 1e9


# -- (a) the seed's loop, as written -----------------------------------------------------------

def grad_clipping(net: torch.nn.Module, theta: float) -> None:
    """The well-known helper the seed calls (d2l's): its `if norm > theta` is a host read."""
    params = [p for p in net.parameters() if p.requires_grad and p.grad is not None]
    norm = torch.sqrt(sum(torch.sum(p.grad ** 2) for p in params))
    if norm > theta:
        for p in params:
            p.grad[:] *= theta / norm


def seed_style(device: torch.device, root: Path) -> Callable[[int], float]:
    """A block of n steps of the seed's loop as written (its data under `root`, removed by the caller)."""
    import torchvision
    from torch import nn

    class BundledMNIST(torchvision.datasets.MNIST):
        """torchvision's MNIST over the bundled test split only (it checks for all four files)."""

        resources = [r for r in torchvision.datasets.MNIST.resources if r[0].startswith("t10k")]

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

    def block(n: int) -> float:
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
        return 1.0

    return block


# -- (b) the reference trainer and (c) the population ------------------------------------------

def bench_config(device: str) -> RunConfig:
    return RunConfig().replace(dataset="mnist-10k", device=device, schedule="fixed", d_steps=1)


CURES = {t.key: t.on for t in toggles.CURES}
"""Each cure at the setting cures-study uses, for the (e) rows."""


def reference(cfg: RunConfig, dataset, device: torch.device) -> Callable[[int], float]:
    trainer = Trainer(cfg, dataset)
    state = {"b": 0}
    perm = torch.randperm(len(trainer.data), device=device)
    trainer.step.noise_std = cfg.cures.instance_noise  # the first epoch's

    def block(n: int) -> float:
        probes = Probes()
        B = cfg.data.batch_size
        g_steps = 0
        for _ in range(n):
            b = state["b"] % trainer.steps_per_epoch
            x = trainer.data[perm[b * B:(b + 1) * B]]
            step = state["b"]
            g_steps += trainer.step.batch(x, lambda draw, step=step: trainer.noise(step, draw), probes,
                                          lambda slot, step=step: trainer.instance_noise(step, slot)).steps
            state["b"] += 1
        probes.summary()  # the per-epoch read, charged to these steps
        if cfg.cures.spectral_norm or cfg.cures.g_ema:
            trainer.cure_probes()  # their epoch-end probes, charged too
        return g_steps / n

    return block


def population(cfg: RunConfig, dataset, size: int, device: torch.device,
               adam_impl: str = "auto") -> Callable[[int], float]:
    """Batches of a population of `size` members, lrs spread over three decades."""
    configs = [cfg.replace(seed=i, lr_d=10 ** (-5 + 3 * i / max(size - 1, 1)), lr_g=10 ** (-5 + 3 * i / max(size - 1, 1)))
               for i in range(size)]
    pop = PopulationTrainer(configs, dataset, adam_impl=adam_impl)
    state = {"b": 0}
    perm = torch.stack([torch.randperm(len(pop.data), device=device) for _ in range(size)])

    def block(n: int) -> float:
        acc = pop.new_accumulator()
        B = pop.B
        with precision.matmuls(cfg.precision, device):
            for _ in range(n):
                b = state["b"] % pop.steps_per_epoch
                pop.batch(pop.data[perm[:, b * B:(b + 1) * B]], state["b"], acc)
                state["b"] += 1
        stats = pop.summarise(acc)  # the per-epoch read, charged to these steps
        return sum(stats["g_steps"]) / (n * size)

    return block


# -- (f) a study's own population, through the epoch loop -------------------------------------

@dataclass(frozen=True)
class StudyWork:
    """What a study trains, counted from its design: the (f) rows' projection."""

    name: str
    """The study and profile, as `gan-sweep run` names them."""
    configs: list[RunConfig]
    """One population's configurations (the design's first `members` trials), tracking off."""
    trials: int
    """Trials the design plans."""
    epochs: int
    """Epochs per trial (its budget; early stops make a study shorter than this)."""
    steps_per_epoch: int
    """Batches per epoch on the data the bench trains (the bundled 10k split)."""
    eval_every: int
    """Epochs between evaluations."""


def study_work(study: str, profile: str, device: str, dataset, members: int) -> StudyWork:
    from sweeps.study.spec import load_spec

    spec, prof = load_spec(study).for_profile(profile)
    configs = []
    for params in spec.balanced_grid() if spec.sampler == "grid" else [{}]:
        for seed in spec.seeds_for(params):
            configs.append(spec.run_config(params, seed, prof, device=device, dataset="mnist-10k"))
    first = configs[0]
    steps = min(len(dataset.images) // first.data.batch_size, first.budget.steps_per_epoch or 10**9)
    return StudyWork(f"{spec.name}-{profile}", configs[:members], spec.trial_count(prof), first.budget.epochs, steps,
                     first.budget.eval_every)


def study_loop(work: StudyWork, dataset, steps: int) -> Callable[[int], float]:
    """The study's population through `PopulationTrainer.run`: a block of n batches trains n // steps whole
    epochs of `steps` batches (at least one; no evaluator: its cost is the evaluation row's)."""
    configs = [c.replace(epochs=1, steps_per_epoch=steps, stop_early=False) for c in work.configs]
    pop = PopulationTrainer(configs, dataset)

    def block(n: int) -> float:
        epochs = max(1, n // steps)  # whole epochs, as the study trains them (a warm-up asks for fewer: one)
        g_steps = 0
        for _ in range(epochs):
            results = pop.run()  # each call trains epoch 1 again from where the weights are: same work
            g_steps += sum(r.history[-1].g_steps for r in results)
        return g_steps / (epochs * steps * len(results))

    return block


EVALUATED_MEMBERS = 4
"""Members whose evaluation is timed: the loop evaluates members one at a time, so the cost per member
is the same from four spread over the population as from all of them (lr-study: 24), at a sixth the time."""


def study_evaluation(work: StudyWork, dataset, evaluator) -> Callable[[], float]:
    """Seconds of one evaluation of one member (its samples generated and scored), as the loop does it,
    averaged over up to EVALUATED_MEMBERS members spread over the study's population."""
    pop = PopulationTrainer([c.replace(epochs=1, steps_per_epoch=2) for c in work.configs], dataset)
    members = range(0, pop.P, -(-pop.P // EVALUATED_MEMBERS))

    def once() -> float:
        t0 = time.perf_counter()
        for i in members:
            loop.evaluate(pop, i, evaluator)
        _sync(pop.device)
        return (time.perf_counter() - t0) / len(members)

    return once


# -- the whole bench -------------------------------------------------------------------------

def run_bench(device: str, sizes: list[int], steps: int, repeats: int, log=print,
              precisions: tuple[str, ...] | None = None, adaptive: bool = True, cures: bool = True,
              study: str | None = "lr-study", profile: str | None = None) -> dict:
    dev = resolve_device(device)
    cfg = bench_config(str(dev))
    dataset = load_dataset("mnist-10k")
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
    largest = max(sizes)
    if precisions is None:
        precisions = ("bf16", "tf32") if dev.type == "cuda" else ("bf16",)
    # Every row is built before the first is timed (they are timed interleaved): all of them must fit at once.
    members = sum(sizes) + largest * (len(precisions) + adaptive) + 2 + (len(CURES) if cures else 0)
    if study:  # the (f) row: the study's own population
        from sweeps.running.plan import POPULATION_CPU, POPULATION_GPU

        members += POPULATION_GPU if dev.type == "cuda" else POPULATION_CPU
    need = memory.estimate(cfg, members, len(dataset.images), dataset.image_dim)
    free = memory.device_free(dev)
    host, device = memory.split(need, len(dataset.images), dataset.image_dim, free is not None)
    memory.refuse_over(host, f"the bench ({members:,} members in all)", device=device, free=free)
    log(f"bench on {dev} ({name}, {torch.get_num_threads()} threads), batch 64, the bundled 10k split")
    flops = cost.member_step(cfg, dataset.image_dim).flops
    root = Path(tempfile.mkdtemp(prefix="gan-sweep-bench-"))
    try:
        rows = [Timed("(a) seed loop", 1, "fp32", "fixed", steps, seed_style(dev, root), flops),
                Timed("(b) reference", 1, "fp32", "fixed", steps, reference(cfg, dataset, dev), flops)]
        half = max(steps // 2, 2)
        rows += [Timed("(c) population", size, "fp32", "fixed", half, population(cfg, dataset, size, dev), flops)
                 for size in sizes]
        rows += [Timed("(c) population", largest, prec, "fixed", half,
                       population(cfg.replace(precision=prec), dataset, largest, dev), None) for prec in precisions]
        if adaptive:
            rows.append(Timed("(d) population", largest, "fp32", "adaptive", half,
                              population(cfg.replace(schedule="adaptive"), dataset, largest, dev), flops))
        if cures:
            rows += [Timed(f"(e) reference + {key}", 1, "fp32", "fixed", steps,
                           reference(cfg.replace(**{key: value}), dataset, dev), flops) for key, value in CURES.items()]
        work = None
        if study:
            from sweeps.running.plan import (
                POPULATION_CPU,
                POPULATION_GPU,
                default_profile,
            )

            work = study_work(study, profile or default_profile(str(dev)), str(dev), dataset,
                              POPULATION_GPU if dev.type == "cuda" else POPULATION_CPU)
            work_cost = cost.member_step(work.configs[0], dataset.image_dim)
            rows.append(Timed(f"(f) {work.name} epoch loop", len(work.configs), work.configs[0].precision,
                              work.configs[0].schedule.schedule, steps, study_loop(work, dataset, steps),
                              work_cost.flops))
        log(f"{len(rows)} rows, {repeats} interleaved rounds")
        rate_cfg = work.configs[0] if work else cfg
        rate, bandwidth = matmul_rate(rate_cfg, dataset.image_dim, len(work.configs) if work else largest, dev), \
            memory_rate(dev)
        timed = time_interleaved(rows, repeats, dev, log)
        rate_after = matmul_rate(rate_cfg, dataset.image_dim, len(work.configs) if work else largest, dev)
        bandwidth = max(bandwidth, memory_rate(dev))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rate = max(rate, rate_after)  # measured before and after the rows: the better of the two
    for r in timed:
        r["ratio_vs_seed_loop"] = r["member_steps_per_s"] / timed[0]["member_steps_per_s"]
        r["floor_share"] = None
        if r["flops"] is None or r["precision"] != "fp32" or r["schedule"] != "fixed":
            continue  # the floor is fp32's, at one G step per batch
        ms_per_member_step = r["ms_per_step"] / r["members"]
        r["floor_ms_per_member_step"] = r["flops"] / rate / 1e6
        r["floor_share"] = r["floor_ms_per_member_step"] / ms_per_member_step
    fixed = [r for r in timed if r["schedule"] == "fixed" and not r["engine"].startswith("(f)")]
    best = max(fixed, key=lambda r: r["member_steps_per_s"])
    plain = timed[1]
    fixed_largest = next(r for r in timed if r["engine"] == "(c) population" and r["members"] == largest
                         and r["precision"] == "fp32")
    adaptive_row = next((r for r in timed if r["schedule"] == "adaptive"), None)
    result = {
        "device": str(dev), "device_name": name,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "steps": steps, "repeats": repeats,
        "matmul_gflops": rate, "memory_gbs": bandwidth, "allocator_keeps_freed_memory": allocator.keep_freed_memory(),
        "rows": timed, "best": best,
        "cure_cost_vs_reference": {r["engine"].removeprefix("(e) reference + "): r["ms_per_step"] / plain["ms_per_step"]
                                   for r in timed if r["engine"].startswith("(e) reference +")},
        "adaptive_cost_per_update_vs_fixed": (adaptive_row["ms_per_member_update"] / fixed_largest["ms_per_member_update"]
                                              if adaptive_row else None),
        "estimate": {"what": "a full-budget 128-trial lr-study (120 epochs x 937 steps each) at the best rate",
                     "minutes": 128 * SEED_BUDGET_STEPS / best["member_steps_per_s"] / 60,
                     "seed_style_minutes": 128 * SEED_BUDGET_STEPS / timed[0]["member_steps_per_s"] / 60},
        "study": None,
    }
    if work is not None:
        result["study"] = project(work, timed[-1], study_evaluation(work, dataset, _evaluator(dataset)), rate,
                                  work_cost.optimiser_bytes, bandwidth, max(repeats, 1))
    return result


def _evaluator(dataset):
    from gan_core.judge.evaluator import Evaluator

    return Evaluator(dataset)


def project(work: StudyWork, row: dict, evaluation: Callable[[], float], rate: float, optimiser_bytes: float,
            bandwidth: float, repeats: int = 3) -> dict:
    """The study's training time at the loop's measured rate plus its evaluations, beside its floor (the
    matmuls at `rate` GFLOP/s) and the optimiser's (its bytes at `bandwidth` GB/s). `evaluation` gives one
    member's seconds; it is timed `repeats` times after a warm-up, as the rows are: its median is the figure."""
    evaluation()  # warm
    eval_s = statistics.median(evaluation() for _ in range(repeats))  # one member, once
    member_steps = work.trials * work.epochs * work.steps_per_epoch
    evaluations = work.trials * -(-work.epochs // work.eval_every)
    loop_s = member_steps * row["ms_per_step"] / row["members"] / 1000
    floor_s = member_steps * row["flops"] / rate / 1e9
    optimiser_s = member_steps * optimiser_bytes / bandwidth / 1e9
    return {"study": work.name, "trials": work.trials, "epochs": work.epochs, "steps_per_epoch": work.steps_per_epoch,
            "member_steps": member_steps, "gflop_per_member_step": row["flops"] / 1e9,
            "evaluation_s_per_member": eval_s, "evaluations": evaluations,
            "loop_seconds": loop_s, "evaluation_seconds": evaluations * eval_s,
            "projected_seconds": loop_s + evaluations * eval_s, "floor_seconds": floor_s,
            "times_floor": (loop_s + evaluations * eval_s) / floor_s,
            "mb_optimiser_per_member_step": optimiser_bytes / 1e6, "optimiser_floor_seconds": optimiser_s,
            "times_floor_with_optimiser": (loop_s + evaluations * eval_s) / (floor_s + optimiser_s)}
