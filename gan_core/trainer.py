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

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from . import loop, losses, precision, rng
from .config import ConfigError, RunConfig
from .data import Dataset, load_dataset, to_training_tensor
from .evaluator import Evaluator
from .models import Discriminator, Generator, build_models
from .probes import Probes
from .records import Callback, EpochRecord, RunResult, Thresholds
from .schedule import GPhase, make_rule
from .stacked import copy_checked

DTYPES = {"float32": torch.float32, "float64": torch.float64}


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

    def _logits(self, logits: torch.Tensor) -> torch.Tensor:
        """D's logits in the weights' dtype: under bf16 autocast the losses and the clamp stay float32."""
        return logits.to(self.zero.dtype)

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
        logits = self._logits(self.D(x))
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
        logits = self._logits(self.D(self.G(z)))
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
        logits = self._logits(self.D(self.G(z)))
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


def weights_finite(*nets: nn.Module) -> torch.Tensor:
    return torch.stack([torch.isfinite(p).all() for n in nets for p in n.parameters()]).all()


def optimiser_state(opt: torch.optim.Optimizer, params: list[torch.Tensor]) -> dict[str, list]:
    """An optimiser's per-parameter slots in the checkpoint layout: slot name -> one entry per parameter."""
    names = ("step", "exp_avg", "exp_avg_sq") if isinstance(opt, torch.optim.Adam) else ("momentum_buffer",)
    out: dict[str, list] = {name: [] for name in names}
    for p in params:
        st = opt.state.get(p, {})
        for name in names:
            v = st.get(name)
            out[name].append(float(v) if name == "step" and v is not None else
                             (None if v is None else v.detach().clone()))
    return out


def load_optimiser_state(opt: torch.optim.Optimizer, params: list[torch.Tensor], slots: dict[str, list]) -> None:
    opt.state.clear()
    for i, p in enumerate(params):
        st = {}
        for name, values in slots.items():
            v = values[i]
            if v is None:
                continue
            if name == "step":
                st[name] = torch.tensor(float(v), dtype=torch.float32)
            else:
                if tuple(v.shape) != tuple(p.shape):
                    raise ValueError(f"optimiser slot {name} has shape {tuple(v.shape)}, expected {tuple(p.shape)}")
                st[name] = v.to(device=p.device, dtype=p.dtype).clone()
        if st:
            opt.state[p] = st


class Trainer:
    """Trains one run of the seed's GAN and labels its outcome: the reference engine, a stepper of one
    member for `gan_core.loop` (which owns evaluation, the judge, callbacks and checkpoints)."""

    def __init__(self, config: RunConfig, dataset: Dataset | None = None, evaluator: Evaluator | None = None,
                 callbacks: Sequence[Callback] = (), thresholds: Thresholds | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.cfg = config
        self.configs = [config]
        self.device = resolve_device(config.device)
        self.dtype = DTYPES[config.dtype]
        precision.check(config.precision, config.dtype, self.device)
        self.dataset = dataset or load_dataset(config.data.dataset, config.data.data_dir)
        self.image_dim = self.dataset.image_dim
        self.dataset_source = self.dataset.source
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

    # -- the stepper ------------------------------------------------------------------------------
    def train_one_epoch(self, epoch: int, global_step: int) -> EpochRecord:
        cfg, B = self.cfg, self.cfg.data.batch_size
        probes = Probes()
        perm = rng.permutation(self.seed, (rng.STREAM_DATA, epoch), len(self.data))[0]
        t0 = time.perf_counter()
        with precision.matmuls(cfg.precision, self.device):
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

    def train_epoch(self, epoch: int, global_step: int, active: list[bool]) -> list[EpochRecord | None]:
        return [self.train_one_epoch(epoch, global_step) if active[0] else None]

    @torch.no_grad()
    def generate(self, p: int, n: int) -> torch.Tensor:
        """n images in [0, 1] ([n, H*W], on the CPU) from fixed noise of this run's seed."""
        z = rng.normal(self.seed, (rng.STREAM_EVAL, 0, 0), (n, self.cfg.model.z_dim), self.dtype)[0]
        self.G.eval()
        out = self.G(z).float()
        return ((out + 1) / 2 if self.cfg.model.g_output == "tanh" else out).cpu()

    def member_state(self, p: int) -> dict:
        rule = self.step.rule
        state = {}
        for name, net, opt in (("G", self.G, self.step.opt_g), ("D", self.D, self.step.opt_d)):
            params = list(net.parameters())
            state[name] = [t.detach().clone() for t in params]
            state[f"opt_{name}"] = optimiser_state(opt, params)
            state[f"grad_{name}"] = [None if t.grad is None else t.grad.detach().clone() for t in params]
        state["rule"] = {"rest_k": getattr(rule, "rest_k", None), "batches": getattr(rule, "batches", None)}
        return state

    def load_member_state(self, p: int, state: dict) -> None:
        for name, net, opt in (("G", self.G, self.step.opt_g), ("D", self.D, self.step.opt_d)):
            params = list(net.parameters())
            if len(state[name]) != len(params):
                raise ValueError(f"{name} has {len(state[name])} tensors, expected {len(params)}")
            for t, v in zip(params, state[name]):
                copy_checked(t, v, name)
            load_optimiser_state(opt, params, state[f"opt_{name}"])
            for t, g in zip(params, state[f"grad_{name}"]):
                t.grad = None if g is None else g.to(device=t.device, dtype=t.dtype).clone()
        for k, v in state["rule"].items():
            if v is not None and hasattr(self.step.rule, k):  # a population keeps both rules' state
                setattr(self.step.rule, k, int(v))

    def reset_member(self, p: int) -> None:
        self._build()

    # -- one run ----------------------------------------------------------------------------------
    def save_checkpoint(self, path: Path, history: list[EpochRecord]) -> None:
        loop.save_checkpoint(self, 0, path, history, "reference")

    def run(self, checkpoint: Path | None = None, checkpoint_every: int = 2) -> RunResult:
        """Train to the end (or a sealed fate); with `checkpoint`, resume from it if it exists and
        save to it every `checkpoint_every` epochs."""
        callbacks = [lambda p, ev, cb=cb: cb(ev) for cb in self.callbacks]
        result, = loop.run(self, self.evaluator, self.thresholds, "reference", callbacks, [checkpoint],
                           checkpoint_every, self.log)
        self.resumed_from = result.resumed_from
        return result
