"""The one epoch loop both engines run on, and the checkpoints it keeps.

An engine is a *stepper* of P members (the reference trainer is a stepper of one): it trains an
epoch for the members it is told are active, generates a member's samples, and gives or takes a
member's state. Everything else lives here, once: the evaluation cadence, the judge and early
stopping, callbacks, checkpoints and resume, timing, and the final results.

Checkpoints hold one member each, in one format whichever engine wrote them (networks in
`nn.Module` layout, optimiser slots per parameter, the gradients `.grad` still holds, the
schedule's state and the history so far), so a retried trial resumes from its own checkpoint on
either engine. They load with `weights_only=True` (a shared folder must not run code); a file that
cannot be used is moved aside and its member starts from epoch 0.

Members that resume at different epochs: the population trains its members in lockstep, since
batch order and noise are functions of (seed, epoch, step). So the loop starts at the earliest
member's epoch and trains only the members whose history has reached the current epoch; the
others sit masked (a masked member's parameters, optimiser state and counters stay exactly as
they were) until the laggards catch up, then all go on together. A member never trains an epoch
twice and never skips one.

Stopping members from outside (a pruner): a `Stopper` is asked once per epoch, after every member that
trained in it has been called back, which of those that go on stop now; it decides for all of them at
once, so a decision never depends on the order the members were called back in. A member it stops ends
at that epoch's end (its compute goes to the others at once, through `subset`) and its result is handed
to the stopper there, not when the population ends.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
import warnings
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from . import member_state
from .config import DATA_LAYOUT, RunConfig
from .files import make_dir, read_plain, write_atomic
from .judge.evaluator import Evaluator
from .judge.outcome import Judge
from .judge.thresholds import Thresholds
from .memory import HISTORY_BYTES
from .records import EpochEvent, EpochRecord, Quality, RunResult, Verdict

GRID_SAMPLES = 64
"""Samples in the image grid saved at each evaluation (fixed noise, so grids are comparable)."""
CHECKPOINT_FORMAT = 4
"""Bumped when the checkpoint layout changes: a file of another format is moved aside, not misread."""

MemberCallback = Callable[[int, EpochEvent], "bool | None"]
"""Called after every epoch of member p; returning True stops that member at once (a rule that must see
every member's epoch before it decides, such as a study's pruner, is a `Stopper`)."""


class Stopper(Protocol):
    """Stops members from outside the run (e.g. a study's pruner), once per epoch: told what was restored,
    asked after every member's callbacks, told each result of a member it stopped at once."""

    def restored(self, p: int, history: list[EpochRecord]) -> None:
        """Member p resumed from its checkpoint with these epochs (called before any training)."""

    def decide(self, epoch: int, members: list[int]) -> Collection[int]:
        """Of `members` (by index in the configs, ascending), which trained `epoch` (1-based) and go on,
        those to stop now."""

    def ended(self, p: int, result: RunResult) -> None:
        """Member p, stopped by `decide`, has ended: its result (the one `run` returns for it)."""


class Stepper(Protocol):
    """What an engine provides to the loop."""

    configs: list[RunConfig]
    device: torch.device
    steps_per_epoch: int
    image_dim: int
    dataset_source: str

    def train_epoch(self, epoch: int, global_step: int, active: list[bool]) -> list[EpochRecord | None]:
        """Train one epoch for the active members; a record per member (None for the inactive)."""

    def generate(self, p: int, n: int) -> torch.Tensor:
        """Member p's n images [n, H*W] in [0, 1], on the CPU, from its fixed evaluation noise."""

    def member_state(self, p: int) -> dict[str, Any]:
        """Member p's whole training state, in the engine-neutral checkpoint layout."""

    def load_member_state(self, p: int, state: dict[str, Any]) -> None:
        """Restore member p from `member_state`'s layout (raises on anything that does not fit)."""

    def subset(self, keep: Sequence[int]) -> Stepper:
        """An engine holding only members `keep` (in that order), each in its present state."""

    def reset_member(self, p: int) -> None:
        """Member p back to its initial state (after a checkpoint that could not be used)."""


def checkpoint_key(cfg: RunConfig) -> dict:
    """What a checkpoint must match to be resumed: the whole config but the device, and the data layout."""
    flat = cfg.to_flat()
    flat.pop("device")
    return flat | {"data_layout": DATA_LAYOUT}


def save_checkpoint(stepper: Stepper, p: int, path: Path, history: list[EpochRecord], engine: str) -> None:
    """Write member p's checkpoint atomically (randomness is counter-based: no RNG state is needed)."""
    blob = {"format": CHECKPOINT_FORMAT, "engine": engine, "config": checkpoint_key(stepper.configs[p]),
            "state": stepper.member_state(p), "history": [dataclasses.asdict(r) for r in history]}
    make_dir(path.parent)
    if path.is_dir() and not path.is_symlink():  # a folder squatting the name would fail every rerun
        path.replace(path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}"))
    buf = io.BytesIO()
    torch.save(blob, buf)
    write_atomic(path, buf.getvalue())  # never through a link planted at the file or a temporary name


def _state_bytes(state: dict[str, Any]) -> int:
    """Bytes of every tensor in a member state (its weights, slots, gradients, vectors)."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(_state_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_state_bytes(v) for v in state)
    return 0


def checkpoint_limit(fresh: dict[str, Any], epochs: int) -> int:
    """The most bytes a checkpoint of a member whose present state is `fresh` can hold, stored or unpacked:
    its state at its largest (weights, gradients and every optimiser slot set: four times its weights is
    more than that, even with the average of G), its history and room for torch's own records."""
    weights = _state_bytes([fresh["G"], fresh["D"], fresh["sn"], fresh["ema"]])
    return 4 * weights + HISTORY_BYTES * epochs + (1 << 20)


def _unpacked_size(blob: bytes, limit: int) -> None:
    """A torch checkpoint is a zip: refuse one whose records declare more than `limit` bytes unpacked
    before torch allocates them (a compressed record of zeros can declare gigabytes in a few MB)."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as z:
            declared = sum(info.file_size for info in z.infolist())
    except zipfile.BadZipFile:
        raise ValueError("not a torch checkpoint (not a zip file)") from None
    if declared > limit:
        raise ValueError(f"its records declare {declared:,} bytes unpacked, more than this member's checkpoint "
                         f"can hold ({limit:,})")


def load_checkpoint(stepper: Stepper, p: int, path: Path, log: Callable[[str], None] | None) -> list[EpochRecord]:
    """Restore member p from `path`; the history so far. An unusable file is moved aside: []. Read without
    following a link, bounded in size before anything is unpacked, and checked whole (`member_state.check`:
    every field's shape, dtype, count and finiteness, the schedule in range) before any of it is loaded,
    so both engines refuse the same files."""
    try:
        cfg = stepper.configs[p]
        fresh = stepper.member_state(p)
        limit = checkpoint_limit(fresh, cfg.budget.epochs)
        blob = read_plain(path, max_bytes=limit)
        if blob is None:
            raise ValueError("not a plain file (a link, or something else stands there)")
        _unpacked_size(blob, limit)
        with warnings.catch_warnings(record=True) as said:  # torch's own warnings go into the one line below
            warnings.simplefilter("always")
            try:
                blob = torch.load(io.BytesIO(blob), map_location=stepper.device, weights_only=True)
            except Exception as exc:  # noqa: BLE001 - said with what torch warned, then handled below
                raise ValueError(_torch_refusal(exc, said)) from None
        if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not a gan-sweep checkpoint of this version")
        if blob.get("config") != checkpoint_key(stepper.configs[p]):
            raise ValueError("it holds another configuration")
        history = [record_from_dict(d) for d in blob["history"]]
        if len(history) > cfg.budget.epochs or [r.epoch for r in history] != list(range(1, len(history) + 1)):
            raise ValueError(f"its history holds epochs {[r.epoch for r in history][:5]}..., not 1 to at most "
                             f"{cfg.budget.epochs} in order")
        member_state.check(blob["state"], fresh, len(history) * stepper.steps_per_epoch)
        del fresh
        stepper.load_member_state(p, blob["state"])
        return history
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, the run must go on
        stepper.reset_member(p)  # a partial load leaves no trace
        aside = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            path.replace(aside)
            where = f"moved to {aside.name}"
        except OSError:
            where = "left in place"
        message = (f"checkpoint {path.name} could not be used ({type(exc).__name__}: "
                   f"{' '.join(str(exc).split())[:300]}); {where}, training from epoch 0")
        if log:
            log(message)
        else:
            warnings.warn(message, RuntimeWarning, stacklevel=3)
        return []


def _torch_refusal(exc: Exception, said: list) -> str:
    """torch.load's refusal in a few words: the line naming what it refused (its message's other lines
    advise loading without weights_only, which must never be done here) and what it warned on the way."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    what = next((line for line in lines if line.startswith(("Trying to load", "Unsupported", "WeightsUnpickler"))),
                lines[-1] if lines else type(exc).__name__)
    if what.startswith("Weights only load failed"):
        what = "it holds objects other than tensors and numbers"
    warned = "; ".join(" ".join(str(w.message).split())[:120] for w in said)
    return f"torch refused it: {what}" + (f" (torch warned: {warned})" if warned else "")


def record_from_dict(d: dict) -> EpochRecord:
    q = d.get("quality")
    return EpochRecord(**(d | {"quality": Quality(**q) if q else None}))


def evaluate(stepper: Stepper, p: int, evaluator: Evaluator | None) -> tuple[Quality | None, torch.Tensor]:
    """Member p's quality (when there is an evaluator) and its image grid."""
    side = int(math.isqrt(stepper.image_dim))
    grid = stepper.generate(p, GRID_SAMPLES).view(-1, 1, side, side).clamp(0, 1).nan_to_num(0.0)
    if evaluator is None:
        return None, grid
    return evaluator.quality(stepper.generate(p, stepper.configs[p].budget.eval_samples)), grid


def _ends(sealed: Verdict | None, cfg: RunConfig) -> bool:
    """A sealed run stops when its config says so; a hung one (its literal loop never returned) or one over the
    loop's stated budget always."""
    return sealed is not None and (cfg.budget.stop_early or sealed.label in ("hung", "over_budget"))


def run(stepper: Stepper, evaluator: Evaluator | None, thresholds: Thresholds, engine: str,
        callbacks: Sequence[MemberCallback] = (), checkpoints: Sequence[Path | None] | None = None,
        checkpoint_every: int = 2, log: Callable[[str], None] | None = None,
        stopper: Stopper | None = None) -> list[RunResult]:
    """Train every member to the end of its budget (or its sealed fate, or until `stopper` stops it),
    evaluating, judging, calling back and checkpointing as it goes; one result per member."""
    cfgs = stepper.configs
    P = len(cfgs)
    paths = list(checkpoints) if checkpoints is not None else [None] * P
    judges = [Judge(thresholds) for _ in range(P)]
    histories: list[list[EpochRecord]] = []
    for p in range(P):
        path = paths[p]
        history = load_checkpoint(stepper, p, path, log) if path is not None and path.is_file() else []
        for rec in history:
            judges[p].observe(rec)
        histories.append(history)
        if history and stopper is not None:
            stopper.restored(p, history)
    resumed = [len(h) for h in histories]
    quality: list[Quality | None] = [next((r.quality for r in reversed(h) if r.quality), None) for h in histories]
    samples: list[torch.Tensor | None] = [None] * P
    done = [len(h) >= c.budget.epochs or _ends(judges[p].sealed, c) for p, (h, c) in enumerate(zip(histories, cfgs))]
    stopped = [False] * P
    live = list(range(P))  # the stepper's members, by their index in `cfgs`: ended ones are dropped

    def finish(p: int, i: int) -> None:
        """Member p (the stepper's member i) has ended: its final quality and grid, if not measured yet."""
        diverged = bool(histories[p]) and histories[p][-1].diverged
        if (quality[p] is None or samples[p] is None) and not diverged:
            q, samples[p] = evaluate(stepper, i, evaluator)
            quality[p] = quality[p] or q

    first = stepper

    def give_back(p: int, i: int) -> None:
        """The caller's engine ends holding every member's final state, whichever subset trained it last."""
        if stepper is not first:
            first.load_member_state(p, stepper.member_state(i))

    t0 = time.perf_counter()
    handed: dict[int, RunResult] = {}  # results already given to the stopper: `run` returns the same

    def result(p: int, seconds: float) -> RunResult:
        if p in handed:
            return handed[p]
        return RunResult(cfgs[p], histories[p], judges[p].final(), quality[p], samples[p], seconds,
                         str(stepper.device), stepper.dataset_source, stopped[p], resumed[p])

    start = min((len(h) for h, d in zip(histories, done) if not d), default=0)
    for epoch in range(start, max(c.budget.epochs for c in cfgs)):
        if all(done):
            break
        active = [not done[p] and len(histories[p]) == epoch for p in range(P)]
        if not any(active):
            continue
        records = stepper.train_epoch(epoch, epoch * stepper.steps_per_epoch, [active[p] for p in live])
        saves = []  # checkpoints are written once the stopper has decided: a stopped member's would be stale
        for i, p in ((i, p) for i, p in enumerate(live) if active[p]):
            cfg, rec, judge = cfgs[p], records[i], judges[p]
            last = epoch + 1 == cfg.budget.epochs
            due = last or (epoch + 1) % cfg.budget.eval_every == 0 or rec.hung or judge.wants_quality(rec)
            grid = None
            if not rec.diverged and due:
                q, grid = evaluate(stepper, i, evaluator)
                quality[p], samples[p] = q or quality[p], grid
                rec = dataclasses.replace(rec, quality=q)
            histories[p].append(rec)
            sealed = judge.observe(rec)
            final = last or _ends(sealed, cfg)
            stop = any([cb(p, EpochEvent(rec, sealed, grid, cfg.budget.epochs, final)) for cb in callbacks])
            if final or stop:
                done[p], stopped[p] = True, not last
            elif paths[p] is not None and (epoch + 1) % checkpoint_every == 0:
                saves.append((i, p))
        going = [p for p in live if active[p] and not done[p]]
        if stopper is not None and going:
            halted = set(stopper.decide(epoch + 1, going)) & set(going)
            for i, p in enumerate(live):
                if p in halted:
                    done[p] = stopped[p] = True
                    finish(p, i)
                    handed[p] = result(p, time.perf_counter() - t0)
                    stopper.ended(p, handed[p])
        for i, p in saves:
            if not done[p]:
                save_checkpoint(stepper, i, paths[p], histories[p], engine)
        keep = [i for i, p in enumerate(live) if not done[p]]
        if keep and len(keep) < len(live):  # a masked member costs what a live one does: drop the ended
            for i, p in enumerate(live):
                if done[p]:
                    finish(p, i)
                    give_back(p, i)
            stepper, live = stepper.subset(keep), [live[i] for i in keep]
    seconds = time.perf_counter() - t0
    for i, p in enumerate(live):
        finish(p, i)
        give_back(p, i)
    return [result(p, seconds) for p in range(P)]
