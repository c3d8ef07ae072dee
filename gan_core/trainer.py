"""The reference trainer: a faithful port of the seed's loop, with every pitfall toggle.

Per batch, exactly as the seed: D on real data, D on generated data, then the G phase (the
seed's adaptive rule or a fixed k). The toggles change only what the seed's pitfalls are
about: the clamp, clipping, how the other net is frozen, when gradients are cleared, the
learning rates, the optimiser, G's loss and the schedule.

No per-step DataLoader and no per-step host sync: the data set is one tensor on the device,
batch order and noise are pure functions of the seed (gan_core.rng), and the probes stay on
the device until the epoch ends. The one exception is the seed's own control flow: the
adaptive rule reads D's loss (only on batches where rest_K allows G to train) and each inner
G step's loss, as the seed's float(l) does. A fixed schedule reads nothing.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import losses, rng
from .config import ConfigError, RunConfig
from .data import Dataset, load_dataset, to_training_tensor
from .evaluator import Evaluator, Quality
from .models import Discriminator, Generator, build_models
from .outcome import Judge, Thresholds, Verdict
from .probes import EpochRecord, Probes
from .schedule import GPhase, make_rule

DTYPES = {"float32": torch.float32, "float64": torch.float64}
GRID_SAMPLES = 64
"""Samples in the image grid saved at each evaluation (fixed noise, so grids are comparable)."""


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available; asking for cuda without a GPU is a one-line ConfigError."""
    if not (name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name} was asked for, but no CUDA GPU is available here (use --device cpu)")
    return torch.device(name)


def grad_norm(net: nn.Module) -> torch.Tensor | None:
    """Global L2 norm of the gradients sitting in `net` (None when it has none)."""
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else None


def _make_optimiser(params, cfg: RunConfig, lr: float) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.optimiser == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(o.beta1, o.beta2), eps=o.adam_eps)
    return torch.optim.SGD(params, lr=lr, momentum=o.momentum)


class SeedStep:
    """The seed's three updates on one G/D pair; each is a method so tests can look between them."""

    def __init__(self, cfg: RunConfig, G: Generator, D: Discriminator) -> None:
        self.cfg, self.G, self.D = cfg, G, D
        self.opt_d = _make_optimiser(D.parameters(), cfg, cfg.optim.lr_d)
        self.opt_g = _make_optimiser(G.parameters(), cfg, cfg.optim.lr_g)
        self.rule = make_rule(cfg.schedule)
        p = next(D.parameters())
        self.zero = torch.zeros((), dtype=p.dtype, device=p.device)

    # -- helpers --------------------------------------------------------------------------
    def _zero_both(self) -> None:
        if self.cfg.pitfalls.zero_grad == "both_before_backward":
            self.opt_g.zero_grad()
            self.opt_d.zero_grad()

    def _after_step(self, opt: torch.optim.Optimizer) -> None:
        if self.cfg.pitfalls.zero_grad == "own_after_step":
            opt.zero_grad()

    def _clip(self, net: nn.Module, max_norm: float | None) -> torch.Tensor:
        """Clip as the seed's grad_clipping does; return the pre-clip norm either way."""
        if max_norm is None:
            norm = grad_norm(net)
            return self.zero if norm is None else norm
        return torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm)

    def _norm_or_zero(self, net: nn.Module) -> torch.Tensor:
        norm = grad_norm(net)
        return self.zero if norm is None else norm

    # -- the seed's three updates ---------------------------------------------------------
    def d_real(self, x: torch.Tensor, probes: Probes) -> torch.Tensor:
        p = self.cfg.pitfalls
        self.D.train()
        if p.freeze == "requires_grad":
            self.D.requires_grad_(True)
        self._zero_both()
        leak = self._norm_or_zero(self.D)
        logits = self.D(x)
        loss = losses.d_real_loss(logits, p.clamp, p.clamp_eps)
        loss.backward()
        norm = self._clip(self.D, p.clip_d)
        self.opt_d.step()
        self._after_step(self.opt_d)
        probes.add(d_real=torch.sigmoid(logits.detach()).mean(), grad_d=norm, leak_d=leak,
                   clamp_hits=losses.clamp_hits(logits.detach(), p.clamp_eps, real=True))
        probes.clamp_total += len(x)
        return loss.detach()

    def d_fake(self, z: torch.Tensor, probes: Probes) -> torch.Tensor:
        p = self.cfg.pitfalls
        self.G.eval()
        self._zero_both()
        if p.freeze == "requires_grad":
            self.G.requires_grad_(False)
        leak = self._norm_or_zero(self.D)
        logits = self.D(self.G(z))
        loss = losses.d_fake_loss(logits, p.clamp, p.clamp_eps)
        loss.backward()
        frozen = self._norm_or_zero(self.G)  # only eval(): G got gradients it will never use
        norm = self._clip(self.D, p.clip_d)
        self.opt_d.step()
        self._after_step(self.opt_d)
        probes.add(d_fake=torch.sigmoid(logits.detach()).mean(), grad_d=norm, leak_d=leak,
                   frozen_grad_g=frozen,
                   clamp_hits=losses.clamp_hits(logits.detach(), p.clamp_eps, real=False))
        probes.clamp_total += len(z)
        return loss.detach()

    def g_step(self, z: torch.Tensor, probes: Probes) -> torch.Tensor:
        """One G update; returns the saturating loss log(1 - D(G(z))) that the schedule reads."""
        p = self.cfg.pitfalls
        self.D.eval()
        self.G.train()
        if p.freeze == "requires_grad":
            self.G.requires_grad_(True)
        self._zero_both()
        if p.freeze == "requires_grad":
            self.D.requires_grad_(False)
        leak = self._norm_or_zero(self.G)
        logits = self.D(self.G(z))
        sat = losses.g_saturating(logits, p.clamp, p.clamp_eps)
        loss = sat if p.g_loss == "saturating" else losses.g_non_saturating(logits, p.clamp, p.clamp_eps)
        loss.backward()
        frozen = self._norm_or_zero(self.D)
        norm = self._clip(self.G, p.clip_g)
        self.opt_g.step()
        self._after_step(self.opt_g)
        hit_real = p.g_loss == "non_saturating"  # -log D(G(z)) is clamped from below, like D's real term
        probes.add(loss_g=loss.detach(), grad_g=norm, leak_g=leak, frozen_grad_d=frozen,
                   clamp_hits=losses.clamp_hits(logits.detach(), p.clamp_eps, real=hit_real))
        probes.clamp_total += len(z)
        return sat.detach()

    def batch(self, x: torch.Tensor, noise: Callable[[int], torch.Tensor], probes: Probes) -> GPhase:
        """One batch of the seed's loop; `noise(draw)` gives the batch's draw-th latent batch."""
        loss_real = self.d_real(x, probes)
        loss_fake = self.d_fake(noise(0), probes)
        tmp_loss = loss_real + loss_fake
        probes.add(loss_d=tmp_loss)
        draws = iter(range(1, 1 << 30))
        phase = self.rule.run(lambda: float(tmp_loss), lambda: self.g_step(noise(next(draws)), probes))
        probes.batches += 1
        probes.g_steps += phase.steps
        probes.g_batches += phase.steps > 0
        probes.g_capped += phase.capped
        return phase


@dataclass(frozen=True)
class EpochEvent:
    """What callbacks see after each epoch."""

    record: EpochRecord
    """The epoch's signals (and quality, on evaluation epochs)."""
    verdict: Verdict | None
    """The sealed verdict, if the run's fate is now sealed."""
    samples: torch.Tensor | None
    """GRID_SAMPLES images [N, 1, H, W] in [0, 1] from fixed noise, on evaluation epochs."""
    epochs: int
    """The run's planned number of epochs."""


Callback = Callable[[EpochEvent], "bool | None"]
"""Called after every epoch; returning True stops the run (e.g. an Optuna pruner)."""


@dataclass(frozen=True)
class RunResult:
    """A finished run."""

    config: RunConfig
    """The configuration it ran."""
    history: list[EpochRecord]
    """One record per epoch trained."""
    verdict: Verdict
    """The outcome label, its epoch and evidence."""
    quality: Quality | None
    """The last quality evaluation."""
    samples: torch.Tensor | None
    """The last image grid's samples."""
    seconds: float
    """Wall-clock time, evaluation included."""
    device: str
    """The device it trained on."""
    dataset_source: str
    """Which data was used (e.g. the bundled 10k split)."""
    stopped_early: bool
    """True when the run stopped before its last epoch (sealed fate or a callback)."""
    resumed_from: int = 0
    """Epochs restored from a checkpoint (0: trained from scratch)."""

    def summary(self) -> dict:
        """A JSON-ready summary."""
        return {
            "config": self.config.to_flat(),
            "outcome": self.verdict.label,
            "outcome_epoch": self.verdict.epoch,
            "evidence": self.verdict.evidence,
            "sealed": self.verdict.sealed,
            "quality": self.quality.as_dict() if self.quality else None,
            "epochs_trained": len(self.history),
            "stopped_early": self.stopped_early,
            "resumed_from": self.resumed_from,
            "seconds": self.seconds,
            "device": self.device,
            "dataset": self.dataset_source,
            "history": [r.metrics() | {"epoch": r.epoch} for r in self.history],
        }


def weights_finite(*nets: nn.Module) -> torch.Tensor:
    return torch.stack([torch.isfinite(p).all() for n in nets for p in n.parameters()]).all()


class Trainer:
    """Trains one run of the seed's GAN and labels its outcome."""

    def __init__(self, config: RunConfig, dataset: Dataset | None = None, evaluator: Evaluator | None = None,
                 callbacks: Sequence[Callback] = (), thresholds: Thresholds | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.cfg = config
        self.device = resolve_device(config.device)
        self.dtype = DTYPES[config.dtype]
        self.dataset = dataset or load_dataset(config.data.dataset, config.data.data_dir)
        self.data = to_training_tensor(self.dataset.images, g_output=config.model.g_output,
                                       device=self.device, dtype=self.dtype)
        if len(self.data) < config.data.batch_size:
            raise ConfigError(f"batch_size {config.data.batch_size} is larger than the data set ({len(self.data)} images)")
        self.evaluator = evaluator
        self.callbacks = list(callbacks)
        self.thresholds = thresholds or (evaluator.thresholds() if evaluator else Thresholds())
        self.log = log
        self._build()
        self.seed = torch.tensor([config.seed], device=self.device)

    def _build(self) -> None:
        """The networks and optimisers at their initial state (a function of the seed alone)."""
        self.G, self.D = build_models(self.cfg.model, self.dataset.image_dim, self.cfg.seed, self.device, self.dtype)
        self.step = SeedStep(self.cfg, self.G, self.D)

    @property
    def steps_per_epoch(self) -> int:
        n = len(self.data) // self.cfg.data.batch_size
        cap = self.cfg.budget.steps_per_epoch
        return min(n, cap) if cap else n

    def noise(self, step: int, draw: int, n: int | None = None) -> torch.Tensor:
        n = n or self.cfg.data.batch_size
        return rng.normal(self.seed, (rng.STREAM_NOISE, step, draw), (n, self.cfg.model.z_dim), self.dtype)[0]

    def train_epoch(self, epoch: int, global_step: int) -> EpochRecord:
        cfg, B = self.cfg, self.cfg.data.batch_size
        probes = Probes()
        perm = rng.permutation(self.seed, (rng.STREAM_DATA, epoch), len(self.data))[0]
        t0 = time.perf_counter()
        for b in range(self.steps_per_epoch):
            x = self.data[perm[b * B:(b + 1) * B]]
            step = global_step + b
            self.step.batch(x, lambda draw, step=step: self.noise(step, draw), probes)
        s = probes.summary()  # the epoch's one device read (it also waits for the device)
        finite = bool(weights_finite(self.G, self.D))
        seconds = time.perf_counter() - t0
        return EpochRecord(
            epoch=epoch + 1, step=global_step + probes.batches, **s, g_steps=probes.g_steps,
            g_batches=probes.g_batches, g_capped=probes.g_capped, weights_finite=finite,
            batches=probes.batches, seconds=seconds, samples_per_s=probes.batches * B / max(seconds, 1e-9))

    @torch.no_grad()
    def generate(self, n: int, stream: int = rng.STREAM_EVAL) -> torch.Tensor:
        """n images in [0, 1] ([n, H*W], on the CPU) from fixed noise of this run's seed."""
        z = rng.normal(self.seed, (stream, 0, 0), (n, self.cfg.model.z_dim), self.dtype)[0]
        self.G.eval()
        out = self.G(z).float()
        return ((out + 1) / 2 if self.cfg.model.g_output == "tanh" else out).cpu()

    def evaluate(self) -> tuple[Quality | None, torch.Tensor]:
        side = int(math.isqrt(self.dataset.image_dim))
        grid = self.generate(GRID_SAMPLES).view(-1, 1, side, side).clamp(0, 1).nan_to_num(0.0)
        if self.evaluator is None:
            return None, grid
        return self.evaluator.quality(self.generate(self.cfg.budget.eval_samples)), grid

    # -- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self, path: Path, history: list[EpochRecord]) -> None:
        """Everything the run needs to go on exactly where it was (randomness is counter-based,
        so no RNG state is needed); written atomically."""
        rule = self.step.rule
        blob = {
            "config": _checkpoint_key(self.cfg), "G": self.G.state_dict(), "D": self.D.state_dict(),
            "opt_d": self.step.opt_d.state_dict(), "opt_g": self.step.opt_g.state_dict(),
            "rule": {"rest_k": getattr(rule, "rest_k", None), "batches": getattr(rule, "batches", None)},
            "history": [dataclasses.asdict(r) for r in history],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(blob, tmp)
        tmp.replace(path)

    def load_checkpoint(self, path: Path) -> list[EpochRecord] | None:
        """Restore from `path` if it holds this very config; returns the history so far.

        Loaded with weights_only=True: a checkpoint folder can be shared by many workers, and a pickle
        placed there must not run code. A file that cannot be used (corrupt, truncated, tampered with,
        of another shape or config) is moved aside and the run starts from epoch 0 with a warning."""
        try:
            blob = torch.load(path, map_location=self.device, weights_only=True)
            if not isinstance(blob, dict) or blob.get("config") != _checkpoint_key(self.cfg):
                raise ValueError("it holds another configuration")
            history = [_record_from_dict(d) for d in blob["history"]]
            self.G.load_state_dict(blob["G"])
            self.D.load_state_dict(blob["D"])
            self.step.opt_d.load_state_dict(blob["opt_d"])
            self.step.opt_g.load_state_dict(blob["opt_g"])
            for k, v in blob["rule"].items():
                if v is not None:
                    setattr(self.step.rule, k, v)
            return history
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, the run must go on
            self._build()  # a partial load leaves no trace
            aside = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
            try:
                path.replace(aside)
                where = f"moved to {aside.name}"
            except OSError:
                where = "left in place"
            message = (f"checkpoint {path.name} could not be used ({type(exc).__name__}: "
                       f"{' '.join(str(exc).split())[:200]}); {where}, training from epoch 0")
            if self.log:
                self.log(message)
            else:
                warnings.warn(message, RuntimeWarning, stacklevel=2)
            return None

    def run(self, checkpoint: Path | None = None, checkpoint_every: int = 2) -> RunResult:
        """Train to the end (or a sealed fate); with `checkpoint`, resume from it if it exists and
        save to it every `checkpoint_every` epochs."""
        cfg = self.cfg
        judge = Judge(self.thresholds)
        history: list[EpochRecord] = []
        if checkpoint is not None and checkpoint.is_file():
            history = self.load_checkpoint(checkpoint) or []
            for rec in history:
                judge.observe(rec)
        self.resumed_from = len(history)
        evaluated = [r for r in history if r.quality is not None]
        quality, samples, stopped = (evaluated[-1].quality if evaluated else None), None, False
        t0 = time.perf_counter()
        global_step = history[-1].step if history else 0
        for epoch in range(len(history), cfg.budget.epochs):
            rec = self.train_epoch(epoch, global_step)
            global_step = rec.step
            last = epoch + 1 == cfg.budget.epochs
            grid = None
            due = last or (epoch + 1) % cfg.budget.eval_every == 0 or judge.wants_quality(rec)
            if not rec.diverged and due:
                q, grid = self.evaluate()
                quality, samples = q or quality, grid
                rec = _with_quality(rec, q)
            history.append(rec)
            sealed = judge.observe(rec)
            stop = any([cb(EpochEvent(rec, sealed, grid, cfg.budget.epochs)) for cb in self.callbacks])
            if (sealed and cfg.budget.stop_early) or stop:
                stopped = not last
                break
            if checkpoint is not None and not last and (epoch + 1) % checkpoint_every == 0:
                self.save_checkpoint(checkpoint, history)
        if (quality is None or samples is None) and not history[-1].diverged:
            q, samples = self.evaluate()
            quality = quality or q
        return RunResult(cfg, history, judge.final(), quality, samples, time.perf_counter() - t0,
                         str(self.device), self.dataset.source, stopped, self.resumed_from)


def _with_quality(rec: EpochRecord, q: Quality | None) -> EpochRecord:
    return dataclasses.replace(rec, quality=q)


def _checkpoint_key(cfg: RunConfig) -> dict:
    """What a checkpoint must match to be resumed: the whole config but the device."""
    flat = cfg.to_flat()
    flat.pop("device")
    return flat


def _record_from_dict(d: dict) -> EpochRecord:
    q = d.get("quality")
    return EpochRecord(**(d | {"quality": Quality(**q) if q else None}))
