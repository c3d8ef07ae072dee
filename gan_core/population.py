"""The population engine: P run configurations of one model shape trained at once.

One trial of the seed's GAN is tiny; on a GPU its time goes to launching kernels. Here every
weight is stacked as [P, in, out] and each layer is one batched matmul (`baddbmm`), so a step
costs the same launches for 1 member or 512. What differs between members is data:

- per member: lr_d, lr_g, Adam's betas and eps, clip_d, clip_g, clamp mode and eps, G's loss,
  schedule (adaptive or fixed k, cap, thresholds), seed (weights, batch order, noise);
- shared (the structure; members that differ here go to different populations): model sizes,
  G's output, the data set, batch size, dtype, device, budget, and the reference trainer's
  defaults for freeze (requires_grad_(False)), zero_grad (both before backward) and Adam.

Correctness rules, each tested against the reference trainer (the oracle):
- Adam is hand-written with per-member masked updates: a member that skips a step keeps its
  parameters, both moments and its step count exactly (`torch.where`, never a zeroed gradient
  or a multiplied mask, which would still move Adam's moments and count).
- Gradient norms and clipping are per member (never one global norm).
- Each clamp mode and G loss is computed on its own members' rows (index, not `where`: a
  `where` would send 0 * inf = NaN gradients from the unselected branch into other members).
- NaN isolation: a member with a non-finite loss or gradient is marked dead and masked from
  every update; members never share a reduction, so it cannot change any other member.
- Probes stay on the device and are read once per epoch, as in the reference trainer; the
  adaptive schedule's inner loop reads one boolean per iteration (are any members still in it),
  amortised over the whole population.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch.optim.adam import adam as adam_step

from . import losses, rng
from .config import RunConfig
from .data import Dataset, to_training_tensor
from .evaluator import Evaluator, Quality
from .models import build_models
from .outcome import Judge, Thresholds
from .probes import EpochRecord
from .trainer import DTYPES, GRID_SAMPLES, EpochEvent, RunResult, resolve_device

STRUCTURE_KEYS = ("z_dim", "g_hidden", "d_hidden", "leaky_slope", "g_output", "dataset", "data_dir", "batch_size",
                  "epochs", "steps_per_epoch", "eval_every", "eval_samples", "stop_early", "device", "dtype",
                  "optimiser", "freeze", "zero_grad")
"""Config keys every member of one population shares."""
SUPPORTED = {"optimiser": "adam", "freeze": "requires_grad", "zero_grad": "both_before_backward"}
"""The population implements the seed's defaults of these; other values train on the reference engine."""


def unsupported_reason(cfg: RunConfig) -> str | None:
    """Why a config cannot join a population (None when it can)."""
    flat = cfg.to_flat()
    for key, value in SUPPORTED.items():
        if flat[key] != value:
            return f"{key}={flat[key]} (the population engine implements {key}={value})"
    return None


def structure_key(cfg: RunConfig) -> tuple:
    """Configs with equal keys can share one population."""
    flat = cfg.to_flat()
    return tuple((k, flat[k]) for k in STRUCTURE_KEYS)


def split_into_populations(configs: Sequence[RunConfig], max_size: int) -> list[list[int]]:
    """Indices of `configs` grouped into populations of at most `max_size` sharing a structure."""
    groups: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(configs):
        groups.setdefault(structure_key(cfg), []).append(i)
    return [g[j:j + max_size] for g in groups.values() for j in range(0, len(g), max_size)]


class StackedMLP:
    """P independent MLPs as stacked weights [P, in, out] and biases [P, out]."""

    def __init__(self, weights: list[torch.Tensor], biases: list[torch.Tensor]) -> None:
        self.weights, self.biases = weights, biases

    @property
    def params(self) -> list[torch.Tensor]:
        return [t for pair in zip(self.weights, self.biases) for t in pair]

    def layer(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.biases[i].unsqueeze(1), x, self.weights[i])


def _stack_linear(layers: list[list[torch.nn.Linear]], device, dtype) -> StackedMLP:
    """layers[member][k] -> stacked weights of layer k ([P, in, out], as leaf tensors with grad)."""
    ws, bs = [], []
    for k in range(len(layers[0])):
        w = torch.stack([m[k].weight.detach().T for m in layers]).to(device=device, dtype=dtype).contiguous()
        b = torch.stack([m[k].bias.detach() for m in layers]).to(device=device, dtype=dtype).contiguous()
        ws.append(w.requires_grad_())
        bs.append(b.requires_grad_())
    return StackedMLP(ws, bs)


@dataclass
class AdamState:
    """Per-member Adam moments and step counts for a list of stacked parameters."""

    m: list[torch.Tensor]
    v: list[torch.Tensor]
    step: torch.Tensor  # [P], float64

    @classmethod
    def zeros(cls, params: list[torch.Tensor]) -> AdamState:
        p0 = params[0]
        return cls([torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params],
                   torch.zeros(p0.shape[0], dtype=torch.float64, device=p0.device))


def _per_member(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return x.view((-1,) + (1,) * (like.dim() - 1))


@torch.no_grad()
def masked_adam(params: list[torch.Tensor], grads: list[torch.Tensor], state: AdamState, mask: torch.Tensor,
                lr: torch.Tensor, beta1: torch.Tensor, beta2: torch.Tensor, eps: torch.Tensor) -> None:
    """torch.optim.Adam's update, applied only to members in `mask`: skipped members keep their
    parameters, moments and step count exactly."""
    # On a CPU, launches are cheap and reading the mask is free: each stepping member goes through
    # torch's own fused Adam kernel on its slices (one pass over memory instead of ~10), and a
    # member that skips is simply not passed. On a GPU that read would stall the launch queue,
    # so every member is computed and the result selected.
    if params[0].device.type == "cpu":
        hyper = torch.stack([lr.double(), beta1.double(), beta2.double(), eps.double(), state.step]).tolist()
        for i in mask.nonzero().flatten().tolist():
            lr_i, b1_i, b2_i, eps_i, step_i = (h[i] for h in hyper)
            steps = [torch.tensor(step_i, dtype=torch.float32) for _ in params]
            adam_step([p[i] for p in params], [g[i] for g in grads], [m[i] for m in state.m],
                                  [v[i] for v in state.v], [], steps, fused=True, amsgrad=False, beta1=b1_i,
                                  beta2=b2_i, lr=lr_i, weight_decay=0.0, eps=eps_i, maximize=False)
        state.step.add_(mask.double())
        return
    step = state.step + mask.double()
    bc1 = 1 - beta1.double() ** step
    bc2_sqrt = (1 - beta2.double() ** step).sqrt()
    dt = params[0].dtype
    step_size, bc2_sqrt = (lr.double() / bc1).to(dt), bc2_sqrt.to(dt)
    beta1, beta2, eps = beta1.to(dt), beta2.to(dt), eps.to(dt)
    for p, g, m, v in zip(params, grads, state.m, state.v):
        sel = _per_member(mask, p)
        m_new = torch.lerp(m, g, _per_member(1 - beta1, p))
        v_new = torch.addcmul(v * _per_member(beta2, p), g, g * _per_member(1 - beta2, p))
        denom = v_new.sqrt() / _per_member(bc2_sqrt, p) + _per_member(eps, p)
        p.copy_(torch.where(sel, p - _per_member(step_size, p) * (m_new / denom), p))
        m.copy_(torch.where(sel, m_new, m))
        v.copy_(torch.where(sel, v_new, v))
    state.step.copy_(step)


def member_norms(grads: list[torch.Tensor]) -> torch.Tensor:
    """[P] global L2 norm of each member's gradient (over all its parameters)."""
    return torch.stack([g.flatten(1).norm(dim=1) for g in grads], 1).norm(dim=1)


def clip_(grads: list[torch.Tensor], norms: torch.Tensor, max_norm: torch.Tensor, clip_on: torch.Tensor) -> None:
    """clip_grad_norm_'s rule per member: scale by min(1, max / (norm + 1e-6)) where clipping is on."""
    coef = torch.where(clip_on, (max_norm / (norms + 1e-6)).clamp(max=1.0), torch.ones_like(norms))
    for g in grads:
        g.mul_(_per_member(coef, g))


class _Groups:
    """Row indices of the members using each clamp mode / G loss (computed once)."""

    def __init__(self, values: list[str], device) -> None:
        self.index = {v: torch.tensor([i for i, x in enumerate(values) if x == v], device=device)
                      for v in dict.fromkeys(values)}


def _loss_by_group(logits: torch.Tensor, groups: _Groups, eps: torch.Tensor, fn) -> torch.Tensor:
    """Per-member losses [P], each group of members through its own formula."""
    if len(groups.index) == 1:  # one formula for all: no indexing needed
        return fn(logits, next(iter(groups.index)), eps)
    out = logits.new_zeros(logits.shape[0])
    for mode, idx in groups.index.items():
        out = out.index_put((idx,), fn(logits[idx], mode, eps[idx]))
    return out


class PopulationTrainer:
    """Trains configs (one structure) as one population; results equal each config's single run."""

    def __init__(self, configs: Sequence[RunConfig], dataset: Dataset, evaluator: Evaluator | None = None,
                 callbacks: Sequence[Callable[[int, EpochEvent], bool | None]] = (),
                 thresholds: Thresholds | None = None) -> None:
        if len({structure_key(c) for c in configs}) != 1:
            raise ValueError("population members must share their structure (see STRUCTURE_KEYS)")
        for c in configs:
            reason = unsupported_reason(c)
            if reason:
                raise ValueError(f"config not supported by the population engine: {reason}")
        self.configs = list(configs)
        c0 = self.configs[0]
        self.P = len(configs)
        self.device = resolve_device(c0.device)
        self.dtype = DTYPES[c0.dtype]
        self.dataset = dataset
        self.data = to_training_tensor(dataset.images, g_output=c0.model.g_output, device=self.device, dtype=self.dtype)
        self.evaluator, self.callbacks = evaluator, list(callbacks)
        self.thresholds = thresholds or (evaluator.thresholds() if evaluator else Thresholds())
        dev, dt = self.device, self.dtype

        gs, ds = [], []
        for c in configs:  # each member's weights exactly as its single run draws them
            G, D = build_models(c.model, dataset.image_dim, c.seed, torch.device("cpu"), torch.float32)
            gs.append([m for m in G.net if isinstance(m, torch.nn.Linear)])
            ds.append([m for m in D.net if isinstance(m, torch.nn.Linear)])
        self.G, self.D = _stack_linear(gs, dev, dt), _stack_linear(ds, dev, dt)
        self.adam_g, self.adam_d = AdamState.zeros(self.G.params), AdamState.zeros(self.D.params)

        def col(f, dtype=dt):
            return torch.tensor([f(c) for c in configs], device=dev, dtype=dtype)

        self.seeds = col(lambda c: c.seed, torch.int64)
        f64 = torch.float64  # optimiser settings exactly as the single run's Python floats
        self.lr_d, self.lr_g = col(lambda c: c.optim.lr_d, f64), col(lambda c: c.optim.lr_g, f64)
        self.beta1, self.beta2 = col(lambda c: c.optim.beta1, f64), col(lambda c: c.optim.beta2, f64)
        self.adam_eps = col(lambda c: c.optim.adam_eps, f64)
        self.clip_d = col(lambda c: c.pitfalls.clip_d or 0.0)
        self.clip_g = col(lambda c: c.pitfalls.clip_g or 0.0)
        self.clip_d_on = col(lambda c: c.pitfalls.clip_d is not None, torch.bool)
        self.clip_g_on = col(lambda c: c.pitfalls.clip_g is not None, torch.bool)
        self.clamp_eps = col(lambda c: c.pitfalls.clamp_eps)
        self.clamp = _Groups([c.pitfalls.clamp for c in configs], dev)
        self.g_loss = _Groups([c.pitfalls.g_loss for c in configs], dev)
        self.non_saturating = col(lambda c: c.pitfalls.g_loss == "non_saturating", torch.bool)
        self.adaptive = col(lambda c: c.schedule.schedule == "adaptive", torch.bool)
        self.d_steps = [c.schedule.d_steps for c in configs]
        self.cap = col(lambda c: c.schedule.g_loop_cap if c.schedule.schedule == "adaptive" else 1, torch.int64)
        self.d_thr = col(lambda c: c.schedule.d_loss_threshold)
        self.g_thr = col(lambda c: c.schedule.g_loss_threshold)
        self.k_scale = col(lambda c: c.schedule.rest_k_scale)
        self.rest_k = torch.zeros(self.P, device=dev, dtype=torch.float64)
        self.alive = torch.ones(self.P, device=dev, dtype=torch.bool)  # finite so far
        self.training = torch.ones(self.P, device=dev, dtype=torch.bool)  # not yet stopped (sealed)
        self.batches = 0
        self.B, self.z_dim = c0.data.batch_size, c0.model.z_dim
        n = len(self.data) // self.B
        self.steps_per_epoch = min(n, c0.budget.steps_per_epoch) if c0.budget.steps_per_epoch else n

    # -- networks ---------------------------------------------------------------------------------
    def gen(self, z: torch.Tensor) -> torch.Tensor:
        G = self.G
        h = torch.relu(G.layer(0, z))
        h = torch.relu(G.layer(1, h))
        out = G.layer(2, h)
        return torch.sigmoid(out) if self.configs[0].model.g_output == "sigmoid" else torch.tanh(out)

    def disc(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.D.layer(0, x), self.configs[0].model.leaky_slope)
        return self.D.layer(1, h).squeeze(-1)

    def noise(self, step: int, draw: int) -> torch.Tensor:
        return rng.normal(self.seeds, (rng.STREAM_NOISE, step, draw), (self.B, self.z_dim), self.dtype)

    # -- the seed's three updates, for all members at once -----------------------------------------
    def _update(self, loss: torch.Tensor, net: StackedMLP, adam: AdamState, lr: torch.Tensor, clip: torch.Tensor,
                clip_on: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step of `net` for the members in `mask`: per-member gradient norms and
        clipping, and a non-finite member marked dead (never updated again). Returns (norms, ok)."""
        grads = list(torch.autograd.grad(loss.sum(), net.params))
        norms = member_norms(grads)
        ok = torch.isfinite(loss) & torch.isfinite(norms)
        self.alive &= ok | ~mask
        clip_(grads, norms, clip, clip_on)
        masked_adam(net.params, grads, adam, mask & self.alive, lr, self.beta1, self.beta2, self.adam_eps)
        return norms, ok

    def _d_update(self, logits_fn, loss_fn, real: bool, mask: torch.Tensor, acc: dict) -> torch.Tensor:
        logits = logits_fn()
        loss = _loss_by_group(logits, self.clamp, self.clamp_eps, loss_fn)
        norms, ok = self._update(loss, self.D, self.adam_d, self.lr_d, self.clip_d, self.clip_d_on, mask)
        y = logits.detach()
        acc["d_real" if real else "d_fake"].append(torch.sigmoid(y).mean(1))
        acc["grad_d"].append(norms)
        acc["clamp_hits"].append(losses.clamp_hits(y, self.clamp_eps, real=real).to(self.dtype))
        acc["bad"].append((~ok & mask).to(self.dtype))
        return loss.detach()

    def _g_step(self, z: torch.Tensor, mask: torch.Tensor, acc: dict) -> torch.Tensor:
        logits = self.disc(self.gen(z))
        sat = _loss_by_group(logits, self.clamp, self.clamp_eps, losses.g_saturating)
        loss = self._g_loss(logits, sat)
        norms, ok = self._update(loss, self.G, self.adam_g, self.lr_g, self.clip_g, self.clip_g_on, mask)
        m = mask.to(self.dtype)
        y = logits.detach()
        acc["loss_g"].append(loss.detach().nan_to_num(0.0) * m)
        acc["loss_g_bad"].append((~torch.isfinite(loss.detach()) & mask).to(self.dtype))
        acc["grad_g"].append(norms.nan_to_num(0.0) * m)
        acc["grad_g_max"].append(torch.where(mask, norms, torch.zeros_like(norms)))
        # -log D(G(z)) is clamped from below like D's real term, log(1 - D(G(z))) from above
        hits = torch.where(self.non_saturating, losses.clamp_hits(y, self.clamp_eps, real=True),
                           losses.clamp_hits(y, self.clamp_eps, real=False))
        acc["clamp_hits_g"].append(hits.to(self.dtype) * m)
        acc["bad"].append((~ok & mask).to(self.dtype))
        return sat.detach()

    def _g_loss(self, logits: torch.Tensor, sat: torch.Tensor) -> torch.Tensor:
        """Each member's G loss: the saturating one is `sat`; non-saturating rows are computed apart."""
        if "non_saturating" not in self.g_loss.index:
            return sat
        ns = _loss_by_group(logits, self.clamp, self.clamp_eps, losses.g_non_saturating)
        idx = self.g_loss.index["non_saturating"]
        return sat.index_put((idx,), ns[idx])

    def batch(self, x: torch.Tensor, step: int, acc: dict) -> None:
        """One batch: D on real, D on fake, then each member's G phase (masks for the schedule)."""
        upd = self.training
        with torch.no_grad():
            fake = self.gen(self.noise(step, 0))
        loss_real = self._d_update(lambda: self.disc(x), losses.d_real_loss, True, upd, acc)
        loss_fake = self._d_update(lambda: self.disc(fake), losses.d_fake_loss, False, upd, acc)
        tmp = loss_real + loss_fake
        acc["loss_d"].append(tmp)

        self.batches += 1
        due = torch.tensor([self.batches % k == 0 for k in self.d_steps], device=self.device)
        allowed = torch.where(self.adaptive, (self.rest_k <= 0) & (tmp < self.d_thr), due) & upd
        active = allowed.clone()
        l = torch.zeros(self.P, device=self.device, dtype=self.dtype)
        steps = torch.zeros(self.P, device=self.device, dtype=torch.int64)
        draw = 0
        while bool(active.any()):  # the one host read per inner iteration
            draw += 1
            sat = self._g_step(self.noise(step, draw), active, acc)
            l = torch.where(active, sat, l)
            steps += active.long()
            active = active & self.adaptive & (l.abs() < self.g_thr) & (steps < self.cap)
        trained = steps > 0
        capped = trained & self.adaptive & (l.abs() < self.g_thr)
        new_k = torch.where(torch.isfinite(l), torch.floor(1 + l.abs().double() * self.k_scale.double()),
                            torch.full_like(self.rest_k, 2.0 ** 62))
        decayed = (self.rest_k - 1).clamp(min=0)
        self.rest_k = torch.where(self.adaptive & upd, torch.where(trained, new_k, decayed), self.rest_k)
        acc["g_steps"].append(steps.to(self.dtype))
        acc["g_batches"].append(trained.to(self.dtype))
        acc["g_capped"].append(capped.to(self.dtype))
        acc["updated"].append(upd.to(self.dtype))

    # -- epochs, evaluation, outcome -----------------------------------------------------------
    @staticmethod
    def new_accumulator() -> dict[str, list[torch.Tensor]]:
        """Per-step [P] signals that `batch` appends to and `summarise` reads once."""
        return {k: [] for k in ("loss_d", "loss_g", "loss_g_bad", "d_real", "d_fake", "grad_d", "grad_g", "grad_g_max",
                                "clamp_hits", "clamp_hits_g", "bad", "g_steps", "g_batches", "g_capped", "updated")}

    def train_epoch(self, epoch: int, global_step: int) -> list[EpochRecord]:
        acc = self.new_accumulator()
        perm = rng.permutation(self.seeds, (rng.STREAM_DATA, epoch), len(self.data))
        t0 = time.perf_counter()
        for b in range(self.steps_per_epoch):
            x = self.data[perm[:, b * self.B:(b + 1) * self.B]]
            self.batch(x, global_step + b, acc)
        stats = self.summarise(acc)  # the epoch's one device read
        finite = self._weights_finite()
        seconds = time.perf_counter() - t0
        records = []
        for p in range(self.P):
            s = {k: v[p] for k, v in stats.items()}
            nb = int(s.pop("updated"))
            records.append(EpochRecord(
                epoch=epoch + 1, step=global_step + self.steps_per_epoch, weights_finite=bool(finite[p]),
                batches=nb, seconds=seconds, samples_per_s=nb * self.B / max(seconds, 1e-9), **s))
        return records

    def summarise(self, acc: dict) -> dict[str, list]:
        """Per-member epoch statistics from the accumulated signals, in one device read."""
        def stack(k):
            return torch.stack(acc[k]).double() if acc[k] else torch.zeros(1, self.P, dtype=torch.float64,
                                                                           device=self.device)

        n = stack("updated").sum(0)
        g_steps = stack("g_steps").sum(0)
        d_real, d_fake, loss_d, grad_d = stack("d_real"), stack("d_fake"), stack("loss_d"), stack("grad_d")
        upd = stack("updated")
        upd2 = upd.repeat_interleave(2, 0) if len(grad_d) == 2 * len(upd) else upd

        def mean(t, w, count):
            return torch.where(count > 0, (t.nan_to_num(0.0) * w).sum(0) / count.clamp(min=1),
                               torch.full_like(count, math.nan))

        bad = stack("bad").sum(0) + ((~torch.isfinite(loss_d)) & (upd > 0)).double().sum(0)
        hits = (stack("clamp_hits") * upd2).sum(0) + stack("clamp_hits_g").sum(0)
        total = (2 * n + g_steps) * self.B
        out = {
            "loss_d": torch.where(((~torch.isfinite(loss_d)) & (upd > 0)).any(0), torch.full_like(n, math.nan),
                                  mean(loss_d, upd, n)),
            "loss_g": torch.where(stack("loss_g_bad").sum(0) > 0, torch.full_like(n, math.nan),
                                  torch.where(g_steps > 0, stack("loss_g").sum(0) / g_steps.clamp(min=1),
                                              torch.full_like(n, math.nan))),
            "d_real": mean(d_real, upd, n), "d_fake": mean(d_fake, upd, n),
            "clamp_rate": torch.where(total > 0, hits / total.clamp(min=1), torch.zeros_like(n)),
            "grad_d": mean(grad_d, upd2, 2 * n), "grad_d_max": (grad_d.nan_to_num(nan=-1.0) * upd2).max(0).values.clamp(min=0),
            "grad_g": torch.where(g_steps > 0, stack("grad_g").sum(0) / g_steps.clamp(min=1), torch.zeros_like(n)),
            "grad_g_max": stack("grad_g_max").nan_to_num(nan=-1.0).max(0).values.clamp(min=0),
            "frozen_grad_d": torch.zeros_like(n), "frozen_grad_g": torch.zeros_like(n),
            "leak_d": torch.zeros_like(n), "leak_g": torch.zeros_like(n),
            "g_steps": g_steps, "g_batches": stack("g_batches").sum(0), "g_capped": stack("g_capped").sum(0),
            "nonfinite": bad, "updated": n,
        }
        names = list(out)
        values = torch.stack([out[k] for k in names]).cpu().tolist()
        res = dict(zip(names, values))
        for k in ("g_steps", "g_batches", "g_capped", "nonfinite"):
            res[k] = [int(v) for v in res[k]]
        return res

    def _weights_finite(self) -> list[bool]:
        parts = [torch.isfinite(t).flatten(1).all(1) for t in self.G.params + self.D.params]
        return torch.stack(parts).all(0).cpu().tolist()

    @torch.no_grad()
    def generate(self, p: int, n: int) -> torch.Tensor:
        """Member p's n images in [0, 1] from its fixed evaluation noise (as Trainer.generate)."""
        z = rng.normal(self.seeds[p:p + 1], (rng.STREAM_EVAL, 0, 0), (n, self.z_dim), self.dtype)
        G = self.G
        h = torch.relu(torch.baddbmm(G.biases[0][p:p + 1].unsqueeze(1), z, G.weights[0][p:p + 1]))
        h = torch.relu(torch.baddbmm(G.biases[1][p:p + 1].unsqueeze(1), h, G.weights[1][p:p + 1]))
        out = torch.baddbmm(G.biases[2][p:p + 1].unsqueeze(1), h, G.weights[2][p:p + 1])[0]
        out = torch.sigmoid(out) if self.configs[0].model.g_output == "sigmoid" else (torch.tanh(out) + 1) / 2
        return out.float().cpu()

    def evaluate(self, p: int) -> tuple[Quality | None, torch.Tensor]:
        side = int(math.isqrt(self.dataset.image_dim))
        grid = self.generate(p, GRID_SAMPLES).view(-1, 1, side, side).clamp(0, 1).nan_to_num(0.0)
        if self.evaluator is None:
            return None, grid
        return self.evaluator.quality(self.generate(p, self.configs[p].budget.eval_samples)), grid

    def run(self) -> list[RunResult]:
        c0 = self.configs[0]
        judges = [Judge(self.thresholds) for _ in range(self.P)]
        histories: list[list[EpochRecord]] = [[] for _ in range(self.P)]
        quality: list[Quality | None] = [None] * self.P
        samples: list[torch.Tensor | None] = [None] * self.P
        stopped = [False] * self.P
        done = [False] * self.P
        t0 = time.perf_counter()
        global_step = 0
        for epoch in range(c0.budget.epochs):
            records = self.train_epoch(epoch, global_step)
            global_step += self.steps_per_epoch
            last = epoch + 1 == c0.budget.epochs
            for p, rec in enumerate(records):
                if done[p]:
                    continue
                due = last or (epoch + 1) % c0.budget.eval_every == 0 or judges[p].wants_quality(rec)
                grid = None
                if not rec.diverged and due:
                    q, grid = self.evaluate(p)
                    quality[p], samples[p] = q or quality[p], grid
                    rec = replace(rec, quality=q)
                histories[p].append(rec)
                sealed = judges[p].observe(rec)
                stop = any([cb(p, EpochEvent(rec, sealed, grid, c0.budget.epochs)) for cb in self.callbacks])
                if (sealed and c0.budget.stop_early) or stop or last:
                    done[p] = True
                    stopped[p] = not last
            self.training = torch.tensor([not d for d in done], device=self.device)
            if all(done):
                break
        seconds = time.perf_counter() - t0
        results = []
        for p in range(self.P):
            if quality[p] is None and not histories[p][-1].diverged:
                quality[p], samples[p] = self.evaluate(p)
            results.append(RunResult(self.configs[p], histories[p], judges[p].final(), quality[p], samples[p],
                                     seconds, str(self.device), self.dataset.source, stopped[p]))
        return results
