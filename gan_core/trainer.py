"""The reference trainer: a faithful port of the seed's loop, with every pitfall toggle.

Per batch, exactly as the seed: D on real data, D on generated data, then the G phase (the
seed's adaptive rule or a fixed k). The toggles change only what the seed's pitfalls are
about: the clamp, clipping, how the other net is frozen, when gradients are cleared, the
learning rates, the optimiser, G's loss and the schedule. The field's cures (all off by default)
act at the points their papers name: spectral norm inside D (gan_core.models), the R1 penalty and
label smoothing in D's real step, instance noise on every input D sees, G's EMA after each G step.

No per-step DataLoader and no per-step host sync: the data set is one tensor on the device,
batch order and noise are pure functions of the seed (gan_core.rng), and the probes stay on
the device until the epoch ends. The one exception is the seed's own control flow: the
adaptive rule reads D's loss (only on batches where rest_K allows G to train) and each inner
G step's loss, as the seed's float(l) does. A fixed schedule reads nothing.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from . import allocator, cures, loop, losses, precision, rng
from .config import TMP_LOSS_START, ConfigError, RunConfig, steps_per_epoch
from .data import Dataset, load_dataset, to_training_tensor
from .device import TORCH_DTYPES, resolve_device
from .judge.evaluator import Evaluator
from .judge.thresholds import Thresholds
from .member_state import MemberState, checked
from .models import Discriminator, Generator, build_models, to_pixels
from .probes import Probes
from .records import Callback, EpochRecord, RunResult
from .schedule import GPhase, make_rule
from .stacked import copy_checked


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
        self.noise_std = 0.0  # instance noise this epoch (set by the trainer)
        self.G_ema = copy.deepcopy(G).requires_grad_(False) if cfg.cures.g_ema > 0 else None
        self.ema_updates = 0
        self.out = cfg.model.d_output  # what the clamp receives: sigmoid(D's last layer), or the layer raw
        self.last_g_norm = self.zero  # G's pre-clip gradient norm at the last G step (the hang detector's)
        self.tmp_prev = self.zero + TMP_LOSS_START  # the previous epoch's mean D loss (tmp_loss = previous_epoch)
        self.start_epoch()

    def start_epoch(self) -> None:
        """The epoch's running D-loss sum (for the `tmp_loss` readings epoch_mean and previous_epoch), and
        rest_K afresh where the `rest_k_epoch` reading makes it a local of the epoch."""
        self.d_loss_sum, self.d_loss_n = self.zero, 0
        if self.cfg.schedule.rest_k_epoch == "reset" and hasattr(self.rule, "rest_k"):
            self.rule.rest_k = 0

    def end_epoch(self) -> None:
        """The epoch's mean D loss becomes what the next epoch's rule reads (tmp_loss = previous_epoch)."""
        if self.d_loss_n and self.cfg.schedule.tmp_loss == "previous_epoch":
            self.tmp_prev = self.d_loss_sum / self.d_loss_n

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

    def _d_input(self, t: torch.Tensor, inst: Callable[[int], torch.Tensor] | None, slot: int) -> torch.Tensor:
        """What D sees: `t`, plus this epoch's instance noise (draw `slot` of the batch) when it is on."""
        return t + self.noise_std * inst(slot) if self.noise_std > 0 and inst is not None else t

    @torch.no_grad()
    def _update_ema(self) -> None:
        self.ema_updates += 1
        beta = cures.ema_decay(self.cfg.cures.g_ema, self.ema_updates)
        for e, p in zip(self.G_ema.parameters(), self.G.parameters()):
            e.lerp_(p, 1 - beta)

    # -- the seed's three updates ---------------------------------------------------------
    def d_real(self, x: torch.Tensor, probes: Probes, inst: Callable[[int], torch.Tensor] | None = None) -> torch.Tensor:
        """D's update on real data; returns its classification loss (the R1 penalty is not the seed's
        tmp_loss, which the schedule reads)."""
        p, c = self.cfg.pitfalls, self.cfg.cures
        self.D.train()
        if p.freeze == "requires_grad":
            self.D.requires_grad_(True)
        self._zero_both()
        leak = self._norm_or_zero(self.D)
        x = self._d_input(x, inst, 0)
        if c.r1_gamma > 0:
            x = x.detach().requires_grad_(True)
        logits = self._logits(self.D(x))
        loss = losses.d_real_loss(logits, p.clamp, p.clamp_eps, self.out)
        if c.label_smoothing > 0:
            loss = losses.smoothed_real_loss(loss, losses.d_fake_loss(logits, p.clamp, p.clamp_eps, self.out),
                                             c.label_smoothing)
        total = loss
        if c.r1_gamma > 0:
            grad_x, = torch.autograd.grad(logits.sum(), x, create_graph=True)
            penalty = c.r1_gamma / 2 * grad_x.pow(2).sum(-1).mean(-1)
            probes.add(r1=penalty.detach())
            total = loss + penalty
        total.backward()
        norm = self._clip(self.D, p.clip_d)
        self.opt_d.step()
        self._after_step(self.opt_d)
        probes.add(d_real=losses.reported_prob(logits.detach(), self.out).mean(), grad_d=norm, leak_d=leak,
                   clamp_hits=losses.clamp_hits(logits.detach(), p.clamp_eps, real=True, output=self.out))
        probes.clamp_total += len(x)
        return loss.detach()

    def d_fake(self, z: torch.Tensor, probes: Probes, inst: Callable[[int], torch.Tensor] | None = None) -> torch.Tensor:
        p = self.cfg.pitfalls
        self.G.eval()
        self._zero_both()
        if p.freeze == "requires_grad":
            self.G.requires_grad_(False)
        leak = self._norm_or_zero(self.D)
        logits = self._logits(self.D(self._d_input(self.G(z), inst, 1)))
        loss = losses.d_fake_loss(logits, p.clamp, p.clamp_eps, self.out)
        loss.backward()
        frozen = self._norm_or_zero(self.G)  # only eval(): G got gradients it will never use
        norm = self._clip(self.D, p.clip_d)
        self.opt_d.step()
        self._after_step(self.opt_d)
        probes.add(d_fake=losses.reported_prob(logits.detach(), self.out).mean(), grad_d=norm, leak_d=leak,
                   frozen_grad_g=frozen,
                   clamp_hits=losses.clamp_hits(logits.detach(), p.clamp_eps, real=False, output=self.out))
        probes.clamp_total += len(z)
        return loss.detach()

    def g_step(self, z: torch.Tensor, probes: Probes, inst: Callable[[int], torch.Tensor] | None = None,
               draw: int = 1) -> torch.Tensor:
        """One G update (the batch's `draw`-th); returns the saturating loss log(1 - D(G(z))) that the
        schedule reads."""
        p = self.cfg.pitfalls
        self.D.eval()
        self.G.train()
        if p.freeze == "requires_grad":
            self.G.requires_grad_(True)
        self._zero_both()
        if p.freeze == "requires_grad":
            self.D.requires_grad_(False)
        leak = self._norm_or_zero(self.G)
        logits = self._logits(self.D(self._d_input(self.G(z), inst, 1 + draw)))
        sat = losses.g_saturating(logits, p.clamp, p.clamp_eps, self.out)
        loss = sat if p.g_loss == "saturating" else losses.g_non_saturating(logits, p.clamp, p.clamp_eps, self.out)
        loss.backward()
        frozen = self._norm_or_zero(self.D)
        norm = self._clip(self.G, p.clip_g)
        self.last_g_norm = norm
        self.opt_g.step()
        self._after_step(self.opt_g)
        if self.G_ema is not None:
            self._update_ema()
        hit_real = p.g_loss == "non_saturating"  # -log D(G(z)) is clamped from below, like D's real term
        probes.add(loss_g=loss.detach(), grad_g=norm, leak_g=leak, frozen_grad_d=frozen,
                   clamp_hits=losses.clamp_hits(logits.detach(), p.clamp_eps, real=hit_real, output=self.out))
        probes.clamp_total += len(z)
        return sat.detach()

    def batch(self, x: torch.Tensor, noise: Callable[[int], torch.Tensor], probes: Probes,
              inst: Callable[[int], torch.Tensor] | None = None) -> GPhase:
        """One batch of the seed's loop; `noise(draw)` gives the batch's draw-th latent batch and
        `inst(slot)` its slot-th unit instance noise (see rng.STREAM_INSTANCE)."""
        loss_real = self.d_real(x, probes, inst)
        loss_fake = self.d_fake(noise(0), probes, inst)
        tmp_loss = loss_real + loss_fake
        probes.add(loss_d=tmp_loss)
        read = tmp_loss
        if self.cfg.schedule.tmp_loss != "batch":
            self.d_loss_sum, self.d_loss_n = self.d_loss_sum + tmp_loss, self.d_loss_n + 1
            read = self.d_loss_sum / self.d_loss_n if self.cfg.schedule.tmp_loss == "epoch_mean" else self.tmp_prev
        draws = iter(range(1, 1 << 30))
        watch = self.cfg.schedule.g_loop_cap is None  # the hang detector reads G's gradient norm

        def g_step() -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
            draw = next(draws)
            sat = self.g_step(noise(draw), probes, inst, draw)
            return (sat, self.last_g_norm) if watch else sat

        phase = self.rule.run(lambda: float(read), g_step)
        probes.batches += 1
        probes.phase(phase)
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
        allocator.keep_freed_memory()
        self.dtype = TORCH_DTYPES[config.dtype]
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
        self.G, self.D = build_models(self.cfg.model, self.dataset.image_dim, self.cfg.seed, self.device, self.dtype,
                                      spectral_norm=self.cfg.cures.spectral_norm)
        self.step = SeedStep(self.cfg, self.G, self.D)

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.cfg, len(self.data))

    def noise(self, step: int, draw: int, n: int | None = None) -> torch.Tensor:
        n = n or self.cfg.data.batch_size
        return rng.normal(self.seed, (rng.STREAM_NOISE, step, draw), (n, self.cfg.model.z_dim), self.dtype)[0]

    def instance_noise(self, step: int, slot: int, n: int | None = None) -> torch.Tensor:
        """Unit Gaussian noise for D's `slot`-th input of batch `step` (scaled by the epoch's std); `n` rows, the
        batch's own size (an epoch's last batch may be smaller)."""
        return rng.normal(self.seed, (rng.STREAM_INSTANCE, step, slot), (n or self.cfg.data.batch_size, self.image_dim),
                          self.dtype)[0]

    @torch.no_grad()
    def cure_probes(self) -> dict[str, float]:
        """The epoch-end probes of the cures: D's largest singular value per layer (as D uses the weight),
        and G's relative distance from its average (0 without one)."""
        values = [cures.top_singular_value(w.detach()) for w in self.D.weights()]
        if self.step.G_ema is not None:
            params = list(self.G.parameters())
            diff = torch.nn.utils.get_total_norm([p - e for p, e in zip(params, self.step.G_ema.parameters())])
            values.append(diff / torch.nn.utils.get_total_norm(params))
        else:
            values.append(self.step.zero)
        d_sv_1, d_sv_2, ema = torch.stack([v.double() for v in values]).tolist()
        return {"d_sv_1": d_sv_1, "d_sv_2": d_sv_2, "ema_distance": ema}

    # -- the stepper ------------------------------------------------------------------------------
    def train_one_epoch(self, epoch: int, global_step: int) -> EpochRecord:
        cfg, B = self.cfg, self.cfg.data.batch_size
        probes = Probes()
        perm = rng.permutation(self.seed, (rng.STREAM_DATA, epoch), len(self.data))[0]
        self.step.noise_std = cures.instance_noise_std(cfg.cures.instance_noise, epoch, cfg.budget.epochs)
        self.step.start_epoch()
        t0 = time.perf_counter()
        with precision.matmuls(cfg.precision, self.device):
            for b in range(self.steps_per_epoch):
                x = self.data[perm[b * B:(b + 1) * B]]  # the seed's batch_size = X.shape[0]: the last may be smaller
                step, n = global_step + b, len(x)
                phase = self.step.batch(x, lambda draw, step=step, n=n: self.noise(step, draw, n), probes,
                                        lambda slot, step=step, n=n: self.instance_noise(step, slot, n))
                if phase.hung:  # the literal loop never returns: nothing after it runs
                    break
        self.step.end_epoch()
        s = probes.summary()  # the epoch's one device read (it also waits for the device)
        finite = bool(weights_finite(self.G, self.D))
        seconds = time.perf_counter() - t0
        return EpochRecord(
            epoch=epoch + 1, step=global_step + probes.batches, **s, **self.cure_probes(),
            real_target=1 - cfg.cures.label_smoothing, noise_std=self.step.noise_std, g_steps=probes.g_steps,
            g_batches=probes.g_batches, g_capped=probes.g_capped, g_hung_bound=probes.g_hung_bound,
            g_hung_zero=probes.g_hung_zero, g_phase_max=probes.g_phase_max, weights_finite=finite,
            batches=probes.batches, seconds=seconds, samples_per_s=probes.batches * B / max(seconds, 1e-9))

    def train_epoch(self, epoch: int, global_step: int, active: list[bool]) -> list[EpochRecord | None]:
        return [self.train_one_epoch(epoch, global_step) if active[0] else None]

    @torch.no_grad()
    def generate(self, p: int, n: int) -> torch.Tensor:
        """n images in [0, 1] ([n, H*W], on the CPU) from fixed noise of this run's seed."""
        z = rng.normal(self.seed, (rng.STREAM_EVAL, 0, 0), (n, self.cfg.model.z_dim), self.dtype)[0]
        G = self.step.G_ema if self.step.G_ema is not None else self.G  # with an EMA, the average is what is scored
        G.eval()
        out = G(z).float()
        return to_pixels(out, self.cfg.model.g_output).cpu()

    def member_state(self, p: int) -> MemberState:
        rule = self.step.rule
        state = {}
        for name, net, opt in (("G", self.G, self.step.opt_g), ("D", self.D, self.step.opt_d)):
            params = list(net.parameters())
            state[name] = [t.detach().clone() for t in params]
            state[f"opt_{name}"] = optimiser_state(opt, params)
            state[f"grad_{name}"] = [None if t.grad is None else t.grad.detach().clone() for t in params]
        state["rule"] = {"rest_k": getattr(rule, "rest_k", None), "batches": getattr(rule, "batches", None),
                         "tmp_prev": float(self.step.tmp_prev)}
        state["sn"] = ({"u": [u.clone() for u, _ in self.D.sn_vectors()], "v": [v.clone() for _, v in self.D.sn_vectors()]}
                       if self.D.spectral_norm else None)
        state["ema"] = ({"G": [t.detach().clone() for t in self.step.G_ema.parameters()],
                         "updates": self.step.ema_updates} if self.step.G_ema is not None else None)
        return checked(state)

    def load_member_state(self, p: int, state: MemberState) -> None:
        checked(state)
        for name, net, opt in (("G", self.G, self.step.opt_g), ("D", self.D, self.step.opt_d)):
            params = list(net.parameters())
            if len(state[name]) != len(params):
                raise ValueError(f"{name} has {len(state[name])} tensors, expected {len(params)}")
            for t, v in zip(params, state[name]):
                copy_checked(t, v, name)
            load_optimiser_state(opt, params, state[f"opt_{name}"])
            for t, g in zip(params, state[f"grad_{name}"]):
                t.grad = None if g is None else g.to(device=t.device, dtype=t.dtype).clone()
        for k in ("rest_k", "batches"):
            v = state["rule"][k]
            if v is not None and hasattr(self.step.rule, k):  # a population keeps both rules' state
                setattr(self.step.rule, k, int(v))
        self.step.tmp_prev = self.step.zero + state["rule"]["tmp_prev"]
        if self.D.spectral_norm:
            if not state.get("sn"):
                raise ValueError("the checkpoint has no spectral-norm vectors")
            for (u, v), su, sv in zip(self.D.sn_vectors(), state["sn"]["u"], state["sn"]["v"]):
                copy_checked(u, su, "sn_u")
                copy_checked(v, sv, "sn_v")
        if self.step.G_ema is not None:
            if not state.get("ema"):
                raise ValueError("the checkpoint has no average of G")
            for t, v in zip(self.step.G_ema.parameters(), state["ema"]["G"]):
                copy_checked(t, v, "G_ema")
            self.step.ema_updates = int(state["ema"]["updates"])

    def reset_member(self, p: int) -> None:
        self._build()

    def subset(self, keep: Sequence[int]) -> Trainer:
        """One member: the loop never drops it (when it ends, the run does)."""
        if list(keep) != [0]:
            raise ValueError(f"the reference trainer holds one member, not {list(keep)}")
        return self

    # -- one run ----------------------------------------------------------------------------------
    def save_checkpoint(self, path: Path, history: list[EpochRecord]) -> None:
        loop.save_checkpoint(self, 0, path, history, "reference")

    def run(self, checkpoint: Path | None = None, checkpoint_every: int = 2,
            stopper: loop.Stopper | None = None) -> RunResult:
        """Train to the end (or a sealed fate, or until `stopper` stops it); with `checkpoint`, resume from it
        if it exists and save to it every `checkpoint_every` epochs."""
        callbacks = [lambda p, ev, cb=cb: cb(ev) for cb in self.callbacks]
        result, = loop.run(self, self.evaluator, self.thresholds, "reference", callbacks, [checkpoint],
                           checkpoint_every, self.log, stopper)
        return result
