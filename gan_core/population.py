"""The population engine: P run configurations of one structure trained at once, a stepper for
`gan_core.loop` like the reference trainer.

One trial of the seed's GAN is tiny; on a GPU its time goes to launching kernels. Here every
weight is stacked as [P, in, out] and each layer is one batched matmul (`gan_core.stacked`), so a
step costs the same launches for 1 member or 512. What members share and what each sets for itself
is declared once, with each field of the run config (`POPULATION_CLASS`); members that differ in
a shared field go to different populations. Every toggle is implemented per member: there is no
fallback to the reference engine.

Correctness rules, each tested against the reference trainer (the oracle) in float64:
- Per-member masked Adam or SGD: a member that skips a step keeps its parameters, slots and step
  count exactly (`gan_core.stacked`).
- Gradient norms and clipping are per member (never one global norm).
- Each clamp mode and G loss is computed on its own members' rows (index, not `where`: a `where`
  would send 0 * inf = NaN gradients from the unselected branch into other members).
- What `.grad` would hold is kept per member when any member needs it: with `freeze=eval_only` the
  frozen net still receives gradients, and with `zero_grad=own_after_step` they are not cleared
  before the other net's next update, so they leak into it, exactly as in the reference trainer
  (whose probes, `frozen_grad_*` and `leak_*`, are reproduced too).
- NaN isolation: a member with a non-finite loss or gradient is marked dead and masked from every
  update; members never share a reduction, so it cannot change any other member.
- The field's cures are per member too: spectral norm divides each member's D weights by its own
  sigma (1 where it is off) and advances its own power iteration; R1, label smoothing and instance
  noise scale by per-member factors that are exactly 0 where off (label smoothing's extra term is
  computed on its own members' rows only, like a clamp mode); G's average is kept per member.
- Probes stay on the device and are read once per epoch; the adaptive schedule's inner loop reads
  one boolean per iteration (are any members still in it), amortised over the whole population,
  and runs on the members still in it only (`COMPACT_BELOW`), so a population does not pay for
  its slowest member's inner loop with every member's compute.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from . import (
    allocator,
    cures,
    epoch_signals,
    loop,
    losses,
    population_state,
    precision,
    rng,
)
from .config import (
    POPULATION_CLASS,
    POPULATION_MEMBER,
    POPULATION_SHARED,
    TMP_LOSS_START,
    RunConfig,
    steps_per_epoch,
)
from .data import Dataset, to_training_tensor
from .device import TORCH_DTYPES, resolve_device
from .judge.evaluator import Evaluator
from .judge.thresholds import Thresholds
from .member_state import MemberState
from .models import G_OUTPUT, SN_EPS, build_models, to_pixels
from .records import EpochRecord, RunResult
from .schedule import REST_K_MAX, ZERO_GRADIENT_STEPS
from .stacked import (
    OptimState,
    StackedMLP,
    clip_,
    masked_adam,
    masked_sgd,
    member_norms,
    stack_linear,
)

STRUCTURE_KEYS = tuple(k for k, v in POPULATION_CLASS.items() if v == POPULATION_SHARED)
MEMBER_KEYS = frozenset(k for k, v in POPULATION_CLASS.items() if v == POPULATION_MEMBER)


def _config_reads(*modules) -> frozenset[str]:
    """The config keys the engine's own code reads (`c.<group>.<key>` or `c.seed`), from its source: a
    MEMBER key added to the config but never read here would train every member without it."""
    import ast
    import dataclasses
    import inspect

    groups = {f.name for f in dataclasses.fields(RunConfig) if f.default_factory is not dataclasses.MISSING}
    reads = set()
    for module in modules:
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr in groups:
                reads.add(node.attr)
            elif isinstance(node, ast.Attribute) and node.attr == "seed":
                reads.add("seed")
    return frozenset(reads)


CONSUMES = _config_reads(sys.modules[__name__], loop)
"""The MEMBER keys this engine (with the epoch loop) implements; a population of any other is refused."""
"""Config keys every member of one population shares (declared with each field in gan_core.config)."""
MAX_MEMBERS = 4096
"""Most members one population may hold: past this the networks the studies train outgrow one device."""
COMPACT_BELOW = 0.5
"""The inner G loop runs on a gathered copy of the members still in it once they are fewer than this
share of the population (gathering costs a copy of their weights; computing the idle ones costs more)."""


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


class _Groups:
    """Row indices of the members using each clamp mode / G loss (computed once)."""

    def __init__(self, values: list, device) -> None:
        self.index = {v: torch.tensor([i for i, x in enumerate(values) if x == v], device=device)
                      for v in dict.fromkeys(values)}


def _loss_by_group(logits: torch.Tensor, groups: _Groups, eps: torch.Tensor, fn,
                   members: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row losses, each row through its own (clamp mode, D output) formula. `members`: the population
    index of each row when `logits` holds a subset of the members (None: all, in order)."""
    if len(groups.index) == 1:  # one formula for all: no indexing needed
        mode, output = next(iter(groups.index))
        return fn(logits, mode, eps if members is None else eps[members], output)
    out = logits.new_zeros(logits.shape[0])
    for (mode, output), idx in groups.index.items():
        pos = idx if members is None else torch.nonzero(torch.isin(members, idx)).flatten()
        if len(pos):
            out = out.index_put((pos,), fn(logits[pos], mode, eps[idx if members is None else members[pos]], output))
    return out


def _where(mask: torch.Tensor, new: list[torch.Tensor], old: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.where(mask.view((-1,) + (1,) * (o.dim() - 1)), n, o) for n, o in zip(new, old)]


class PopulationTrainer:
    """Trains configs (one structure) as one population; results equal each config's single run."""

    def __init__(self, configs: Sequence[RunConfig], dataset: Dataset, evaluator: Evaluator | None = None,
                 callbacks: Sequence[Callable] = (), thresholds: Thresholds | None = None,
                 adam_impl: str = "auto", log: Callable[[str], None] | None = None) -> None:
        if len({structure_key(c) for c in configs}) != 1:
            raise ValueError("population members must share their structure (see STRUCTURE_KEYS)")
        if MEMBER_KEYS - CONSUMES:
            raise NotImplementedError(f"the population engine does not implement {sorted(MEMBER_KEYS - CONSUMES)}: "
                                      f"train these configurations on the reference engine")
        self.configs = list(configs)
        c0 = self.configs[0]
        self.P = len(configs)
        self.device = resolve_device(c0.device)
        allocator.keep_freed_memory()
        self.dtype = TORCH_DTYPES[c0.dtype]
        precision.check(c0.precision, c0.dtype, self.device)
        self.dataset = dataset
        self.image_dim, self.dataset_source = dataset.image_dim, dataset.source
        # Pixels in [0, 1]; members whose G ends in tanh see them in [-1, 1] (`_pixels`), as their single run.
        self.data = to_training_tensor(dataset.images, g_output="sigmoid", device=self.device, dtype=self.dtype)
        self.evaluator, self.callbacks, self.log = evaluator, list(callbacks), log
        self.thresholds = thresholds or (evaluator.thresholds() if evaluator else Thresholds())
        self.adam_impl = adam_impl
        dev, dt = self.device, self.dtype

        gs, ds, sn = [], [], []
        for c in configs:  # each member's weights exactly as its single run draws them
            G, D = build_models(c.model, dataset.image_dim, c.seed, torch.device("cpu"), torch.float32,
                                spectral_norm=c.cures.spectral_norm)
            gs.append([m for m in G.net if isinstance(m, torch.nn.Linear)])
            ds.append(D.linears)
            sn.append(D.sn_vectors() if c.cures.spectral_norm else None)
        self.G, self.D = stack_linear(gs, dev, dt), stack_linear(ds, dev, dt)
        self.opt_g, self.opt_d = OptimState.zeros(self.G.params), OptimState.zeros(self.D.params)

        def col(f, dtype=dt):
            return torch.tensor([f(c) for c in configs], device=dev, dtype=dtype)

        # The cures. Spectral norm: each member's power-iteration vectors per D layer ([P, out], [P, in];
        # unused zeros where it is off, whose sigma is taken as 1).
        self.sn_on = col(lambda c: c.cures.spectral_norm, torch.bool)
        self.any_sn = bool(self.sn_on.any())
        if self.any_sn:
            def vectors(layer: int, which: int) -> torch.Tensor:
                shape = self.D.weights[layer].shape[2 - which]  # u: out features, v: in features
                return torch.stack([m[layer][which] if m else torch.zeros(shape) for m in sn]).to(device=dev, dtype=dt)

            self.sn_u = [vectors(i, 0) for i in range(len(self.D.weights))]
            self.sn_v = [vectors(i, 1) for i in range(len(self.D.weights))]
        self.r1_gamma = col(lambda c: c.cures.r1_gamma)
        self.any_r1 = bool((self.r1_gamma > 0).any())
        self.smoothing = col(lambda c: c.cures.label_smoothing)
        self.any_smoothing = bool((self.smoothing > 0).any())
        self.any_instance_noise = any(c.cures.instance_noise > 0 for c in configs)
        self.noise_std = torch.zeros(self.P, device=dev, dtype=dt)  # this epoch's, per member
        self.noisy: torch.Tensor | None = None  # this epoch's members with noise, where not all have it
        self.ema_on = col(lambda c: c.cures.g_ema > 0, torch.bool)
        self.any_ema = bool(self.ema_on.any())
        self.ema_decay = col(lambda c: c.cures.g_ema, torch.float64)
        self.ema_updates = torch.zeros(self.P, device=dev, dtype=torch.float64)
        self.ema_g = [t.detach().clone() for t in self.G.params] if self.any_ema else None

        self.seeds = col(lambda c: c.seed, torch.int64)
        f64 = torch.float64  # optimiser settings exactly as the single run's Python floats
        self.sgd = c0.optim.optimiser == "sgd"
        self.lr_d, self.lr_g = col(lambda c: c.optim.lr_d, f64), col(lambda c: c.optim.lr_g, f64)
        self.beta1, self.beta2 = col(lambda c: c.optim.beta1, f64), col(lambda c: c.optim.beta2, f64)
        self.adam_eps, self.momentum = col(lambda c: c.optim.adam_eps, f64), col(lambda c: c.optim.momentum, f64)
        self.clip_d = col(lambda c: c.pitfalls.clip_d or 0.0)
        self.clip_g = col(lambda c: c.pitfalls.clip_g or 0.0)
        self.clip_d_on = col(lambda c: c.pitfalls.clip_d is not None, torch.bool)
        self.clip_g_on = col(lambda c: c.pitfalls.clip_g is not None, torch.bool)
        self.clamp_eps = col(lambda c: c.pitfalls.clamp_eps)
        # Each member's loss formula: its clamp mode and what the clamp receives (D's output, sigmoid or raw).
        self.clamp = _Groups([(c.pitfalls.clamp, c.model.d_output) for c in configs], dev)
        self.raw = col(lambda c: c.model.d_output == "raw", torch.bool)
        self.d_outputs = {c.model.d_output for c in configs}
        # G's output activation per member (sigmoid, tanh or none).
        self.g_outputs = [c.model.g_output for c in configs]
        self.g_out_rows = {v: col(lambda c, v=v: c.model.g_output == v, torch.bool) for v in dict.fromkeys(self.g_outputs)}
        self.tanh = self.g_out_rows.get("tanh")
        self.g_loss = _Groups([c.pitfalls.g_loss for c in configs], dev)
        self.non_saturating = col(lambda c: c.pitfalls.g_loss == "non_saturating", torch.bool)
        self.eval_only = col(lambda c: c.pitfalls.freeze == "eval_only", torch.bool)
        self.own = col(lambda c: c.pitfalls.zero_grad == "own_after_step", torch.bool)
        # What .grad holds, per member: needed only where a member's gradients can outlive an update.
        self.buffered = bool((self.eval_only | self.own).any())
        self.any_eval_only = bool(self.eval_only.any())
        self.grad_g = [torch.zeros_like(p) for p in self.G.params] if self.buffered else None
        self.grad_d = [torch.zeros_like(p) for p in self.D.params] if self.buffered else None
        self.adaptive = col(lambda c: c.schedule.schedule == "adaptive", torch.bool)
        self.d_steps = col(lambda c: c.schedule.d_steps, torch.int64)
        # An uncapped loop (the seed's) runs until |l| >= 0.1 or the hang detector stops it.
        self.uncapped = col(lambda c: c.schedule.schedule == "adaptive" and c.schedule.g_loop_cap is None, torch.bool)
        self.cap = col(lambda c: (1 if c.schedule.schedule != "adaptive" else
                                  2**62 if c.schedule.g_loop_cap is None else c.schedule.g_loop_cap), torch.int64)
        self.bound = col(lambda c: c.schedule.g_loop_bound, torch.int64)
        self.every_batch = col(lambda c: c.schedule.rest_k_countdown == "every_batch", torch.bool)
        self.epoch_mean = col(lambda c: c.schedule.tmp_loss == "epoch_mean", torch.bool)
        self.prev_epoch = col(lambda c: c.schedule.tmp_loss == "previous_epoch", torch.bool)
        self.any_epoch_mean, self.any_every_batch = bool(self.epoch_mean.any()), bool(self.every_batch.any())
        self.any_loss_sum = self.any_epoch_mean or bool(self.prev_epoch.any())
        self.reset_k = col(lambda c: c.schedule.rest_k_epoch == "reset", torch.bool)
        self.tmp_prev = torch.full((self.P,), TMP_LOSS_START, device=dev, dtype=dt)  # tmp_loss = previous_epoch
        self.hung = torch.zeros(self.P, device=dev, dtype=torch.bool)  # its inner loop never returned this epoch
        self.d_loss_sum = torch.zeros(self.P, device=dev, dtype=dt)  # the epoch's running D loss (tmp_loss reading)
        self.d_loss_n = torch.zeros(self.P, device=dev, dtype=torch.int64)
        self.d_thr = col(lambda c: c.schedule.d_loss_threshold)
        self.g_thr = col(lambda c: c.schedule.g_loss_threshold)
        self.k_scale = col(lambda c: c.schedule.rest_k_scale)
        self.rest_k = torch.zeros(self.P, device=dev, dtype=torch.float64)
        self.batch_count = torch.zeros(self.P, device=dev, dtype=torch.int64)  # each member's FixedRule.batches
        self.alive = torch.ones(self.P, device=dev, dtype=torch.bool)  # finite so far
        self.training = torch.ones(self.P, device=dev, dtype=torch.bool)  # active this epoch
        self.B, self.z_dim = c0.data.batch_size, c0.model.z_dim
        self.rows = self.B  # the batch in hand's size (an epoch's last batch may be smaller: last_batch = keep)
        self.steps_per_epoch = steps_per_epoch(c0, len(self.data))

    # -- networks ---------------------------------------------------------------------------------
    def gen(self, z: torch.Tensor, G: StackedMLP | None = None, rows: torch.Tensor | None = None) -> torch.Tensor:
        """G's samples; `rows`: the members G holds when it is a gathered subset."""
        G = G or self.G
        h = torch.relu(G.layer(0, z))
        h = torch.relu(G.layer(1, h))
        out = G.layer(2, h)
        if len(self.g_out_rows) == 1:
            return G_OUTPUT[self.g_outputs[0]](out)
        # Each member's own activation (where passes no gradient to the branch a row does not take).
        result = out
        for name, mask in self.g_out_rows.items():
            m = mask if rows is None else mask[rows]
            result = torch.where(m.view(-1, 1, 1), G_OUTPUT[name](out), result)
        return result

    def _pixels(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of real images [P, B, D] in each member's G output range ([-1, 1] under tanh)."""
        return x if self.tanh is None else torch.where(self.tanh.view(-1, 1, 1), x * 2 - 1, x)

    def _by_output(self, fn, y: torch.Tensor, rows: torch.Tensor | None, **kw) -> torch.Tensor:
        """`fn(y, ..., output=...)` per row under its member's D output reading (one call when all share one)."""
        if len(self.d_outputs) == 1:
            return fn(y, output=next(iter(self.d_outputs)), **kw)
        raw = self.raw if rows is None else self.raw[rows]
        a, b = fn(y, output="raw", **kw), fn(y, output="sigmoid", **kw)
        return torch.where(raw.view((-1,) + (1,) * (a.dim() - 1)), a, b)

    def _prob(self, y: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """D(x) as the probes report it, per member's D output reading."""
        return self._by_output(losses.reported_prob, y, rows)

    def _hits(self, y: torch.Tensor, eps: torch.Tensor, real: bool, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Per-row clamp-zone counts, per member's D output reading."""
        return self._by_output(losses.clamp_hits, y, rows, eps=eps, real=real)

    def disc(self, x: torch.Tensor, D: StackedMLP | None = None, rows: torch.Tensor | None = None,
             update: bool = False) -> torch.Tensor:
        """D's logits; `rows`: the members D holds when it is a gathered subset; `update`: D is being
        trained (spectral norm advances its power iteration, as the reference's D does in train())."""
        D = self._sn(D or self.D, rows, update) if self.any_sn else (D or self.D)
        h = F.leaky_relu(D.layer(0, x), self.configs[0].model.leaky_slope)
        return D.layer(1, h).squeeze(-1).to(self.dtype)  # losses and the clamp in float32 under bf16

    def _sn(self, D: StackedMLP, rows: torch.Tensor | None, update: bool) -> StackedMLP:
        """D with each member's weights divided by their sigma (models.Discriminator.weights, batched:
        the stacked weight is W transposed, so W v is v @ w and W^T u is w @ u)."""
        sel = (lambda t: t) if rows is None else (lambda t: t[rows])
        on = sel(self.sn_on)
        weights = []
        with torch.autocast(self.device.type, enabled=False):
            for i, w in enumerate(D.weights):
                if update:  # only ever for the whole population (D's own updates)
                    with torch.no_grad():
                        wd, u, v = w.detach(), self.sn_u[i], self.sn_v[i]
                        u_new = F.normalize(torch.bmm(v.unsqueeze(1), wd).squeeze(1), dim=-1, eps=SN_EPS)
                        v_new = F.normalize(torch.bmm(wd, u_new.unsqueeze(2)).squeeze(2), dim=-1, eps=SN_EPS)
                        stepping = (self.training & self.sn_on).unsqueeze(1)
                        self.sn_u[i] = torch.where(stepping, u_new, u)
                        self.sn_v[i] = torch.where(stepping, v_new, v)
                u, v = sel(self.sn_u[i]), sel(self.sn_v[i])
                sigma = (u * torch.bmm(v.unsqueeze(1), w).squeeze(1)).sum(-1)
                weights.append(w / torch.where(on, sigma, torch.ones_like(sigma)).view(-1, 1, 1))
        return StackedMLP(weights, D.biases)

    def d_input(self, t: torch.Tensor, step: int, slot: int, rows: torch.Tensor | None = None) -> torch.Tensor:
        """What D sees: `t` plus each member's instance noise this epoch; a member without noise sees `t`
        itself (on a gathered subset, `t` plus exactly 0 times its draw)."""
        if not self.any_instance_noise:
            return t

        def noised(x: torch.Tensor, members: torch.Tensor | None) -> torch.Tensor:
            seeds, std = (self.seeds, self.noise_std) if members is None else \
                (self.seeds[members], self.noise_std[members])
            return x + std.view(-1, 1, 1) * rng.normal(seeds, (rng.STREAM_INSTANCE, step, slot),
                                                       (self.rows, self.image_dim), self.dtype)

        if rows is None and self.noisy is not None:  # only the noisy members' draws (the epoch's list, on the host)
            return t.index_put((self.noisy,), noised(t[self.noisy], self.noisy)) if len(self.noisy) else t
        return noised(t, rows)

    def noise(self, step: int, draw: int, seeds: torch.Tensor | None = None) -> torch.Tensor:
        return rng.normal(self.seeds if seeds is None else seeds, (rng.STREAM_NOISE, step, draw),
                          (self.rows, self.z_dim), self.dtype)

    # -- updates ----------------------------------------------------------------------------------
    def _optimise(self, params, grads, state: OptimState, mask, lr) -> None:
        if self.sgd:
            masked_sgd(params, grads, state, mask, lr, self.momentum)
        else:
            masked_adam(params, grads, state, mask, lr, self.beta1, self.beta2, self.adam_eps, self.adam_impl)

    def _clear_both(self, mask: torch.Tensor) -> None:
        """The seed's cure, for the members using it: both nets' gradients cleared before a backward."""
        clear = mask & ~self.own
        zero = [torch.zeros_like(t) for t in self.grad_g]
        self.grad_g = _where(clear, zero, self.grad_g)
        self.grad_d = _where(clear, [torch.zeros_like(t) for t in self.grad_d], self.grad_d)

    def _backward(self, loss: torch.Tensor, own_net: str, other: list[torch.Tensor], mask: torch.Tensor,
                  acc: dict, leak_key: str, frozen_key: str | None) -> list[torch.Tensor]:
        """The gradient an update applies to `own_net` ('G' or 'D'); with buffers, what .grad holds:
        the members' stale gradient plus this one, and the other net's gradient where only eval()
        froze it. Records the leak and frozen-gradient probes."""
        params = self.G.params if own_net == "G" else self.D.params
        if not self.buffered:
            return list(torch.autograd.grad(loss.sum(), params))
        self._clear_both(mask)
        mine = "grad_g" if own_net == "G" else "grad_d"
        theirs = "grad_d" if own_net == "G" else "grad_g"
        acc[leak_key].append(torch.where(mask, member_norms(getattr(self, mine)), 0.0))
        grads = torch.autograd.grad(loss.sum(), params + other)
        setattr(self, mine, _where(mask, [b + g for b, g in zip(getattr(self, mine), grads[:len(params)])],
                                   getattr(self, mine)))
        if other:
            added = [b + g for b, g in zip(getattr(self, theirs), grads[len(params):])]
            setattr(self, theirs, _where(mask & self.eval_only, added, getattr(self, theirs)))
        if frozen_key:
            acc[frozen_key].append(torch.where(mask, member_norms(getattr(self, theirs)), 0.0))
        return [t.clone() for t in getattr(self, mine)]

    def _after_step(self, own_net: str, clipped: list[torch.Tensor], mask: torch.Tensor) -> None:
        """.grad after the step: the clipped gradient, or nothing for members that clear their own."""
        if not self.buffered:
            return
        name = "grad_g" if own_net == "G" else "grad_d"
        kept = _where(self.own, [torch.zeros_like(c) for c in clipped], clipped)
        setattr(self, name, _where(mask, kept, getattr(self, name)))

    def _real_loss(self, logits: torch.Tensor) -> torch.Tensor:
        """D's loss on real data, smoothed on the rows of the members that smooth (only there is the
        fake-side term computed: its gradient may be infinite where D(x) = 1)."""
        loss = _loss_by_group(logits, self.clamp, self.clamp_eps, losses.d_real_loss)
        if not self.any_smoothing:
            return loss
        rows = (self.smoothing > 0).nonzero().flatten()
        fake = _loss_by_group(logits[rows], self.clamp, self.clamp_eps, losses.d_fake_loss, rows)
        return loss.index_put((rows,), losses.smoothed_real_loss(loss[rows], fake, self.smoothing[rows]))

    def _d_update(self, input_fn, real: bool, mask: torch.Tensor, acc: dict) -> torch.Tensor:
        """One D update on real data or fakes (`input_fn()`: D's input); returns the classification loss."""
        x = input_fn()
        r1 = real and self.any_r1
        if r1:
            x = x.detach().requires_grad_(True)
        logits = self.disc(x, update=True)
        loss = self._real_loss(logits) if real else _loss_by_group(logits, self.clamp, self.clamp_eps, losses.d_fake_loss)
        total = loss
        if r1:
            grad_x, = torch.autograd.grad(logits.sum(), x, create_graph=True)
            penalty = self.r1_gamma / 2 * grad_x.pow(2).sum(-1).mean(-1)
            acc["r1"].append(penalty.detach())
            total = loss + penalty
        other = self.G.params if (self.buffered and self.any_eval_only and not real) else []
        grads = self._backward(total, "D", other, mask, acc, "leak_d", None if real else "frozen_grad_g")
        norms = member_norms(grads)
        ok = torch.isfinite(total) & torch.isfinite(norms)
        self.alive &= ok | ~mask
        clip_(grads, norms, self.clip_d, self.clip_d_on)
        self._optimise(self.D.params, grads, self.opt_d, mask & self.alive, self.lr_d)
        self._after_step("D", grads, mask)
        y = logits.detach()
        acc["d_real" if real else "d_fake"].append(self._prob(y).mean(1))
        acc["grad_d"].append(norms)
        acc["clamp_hits"].append(self._hits(y, self.clamp_eps, real).to(self.dtype))
        acc["bad"].append((~ok & mask).to(self.dtype))
        return loss.detach()

    def _g_losses(self, logits: torch.Tensor, members: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(the loss each row's G minimises, the saturating log(1 - D(G(z))) the schedule reads). Each
        row's loss is computed by its own formula only: a formula's gradient where it is infinite
        would turn into NaN on rows that do not use it."""
        sat_fn, ns_fn = losses.g_saturating, losses.g_non_saturating
        if "non_saturating" not in self.g_loss.index:
            loss = _loss_by_group(logits, self.clamp, self.clamp_eps, sat_fn, members)
            return loss, loss.detach()
        rows = torch.arange(self.P, device=self.device) if members is None else members
        ns = self.non_saturating[rows]
        loss = logits.new_zeros(logits.shape[0])
        for flag, fn in ((~ns, sat_fn), (ns, ns_fn)):
            pos = flag.nonzero().flatten()
            if len(pos):
                loss = loss.index_put((pos,), _loss_by_group(logits[pos], self.clamp, self.clamp_eps, fn, rows[pos]))
        with torch.no_grad():
            sat = _loss_by_group(logits.detach(), self.clamp, self.clamp_eps, sat_fn, members)
        return loss, sat

    def _g_step(self, step: int, draw: int, mask: torch.Tensor, acc: dict,
                rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One G update for the members in `mask`. With `rows` (the unbuffered path only), on gathered
        copies of just those members' weights and slots, scattered back after: the inner loop's
        stragglers do not pay for the idle members. Returns the saturating loss of the rows and their
        pre-clip G gradient norms (the hang detector's)."""
        def sel(t):
            return t if rows is None else t[rows]

        if rows is None:
            G, D, state = self.G, self.D, self.opt_g
        else:
            G = StackedMLP([w[rows].detach().requires_grad_() for w in self.G.weights],
                           [b[rows].detach().requires_grad_() for b in self.G.biases])
            D = StackedMLP([w[rows].detach() for w in self.D.weights], [b[rows].detach() for b in self.D.biases])
            state = OptimState([m[rows] for m in self.opt_g.m], [v[rows] for v in self.opt_g.v], self.opt_g.step[rows])
        logits = self.disc(self.d_input(self.gen(self.noise(step, draw, sel(self.seeds)), G, rows), step, 1 + draw, rows),
                           D, rows)
        loss, sat = self._g_losses(logits, rows)
        if rows is None:
            other = self.D.params if (self.buffered and self.any_eval_only) else []
            grads = self._backward(loss, "G", other, mask, acc, "leak_g", "frozen_grad_d")
        else:
            grads = list(torch.autograd.grad(loss.sum(), G.params))
        norms = member_norms(grads)
        ok = torch.isfinite(loss) & torch.isfinite(norms)
        if rows is None:
            self.alive &= ok | ~mask
            stepping = mask & self.alive
        else:
            stepping = self.alive[rows] & ok
            self.alive[rows] = stepping
        clip_(grads, norms, sel(self.clip_g), sel(self.clip_g_on))
        if self.sgd:
            masked_sgd(G.params, grads, state, stepping, sel(self.lr_g), sel(self.momentum))
        else:
            masked_adam(G.params, grads, state, stepping, sel(self.lr_g), sel(self.beta1), sel(self.beta2),
                        sel(self.adam_eps), self.adam_impl)
        if rows is None:
            self._after_step("G", grads, mask)
        else:
            with torch.no_grad():  # the gathered members back into the population
                for full, part in zip(self.G.params + self.opt_g.m + self.opt_g.v, G.params + state.m + state.v):
                    full[rows] = part
                self.opt_g.step[rows] = state.step

        def spread(t: torch.Tensor) -> torch.Tensor:
            if rows is None:
                return t
            return torch.zeros(self.P, dtype=t.dtype, device=self.device).index_put((rows,), t)

        if self.any_ema:
            self._update_ema(spread(stepping))

        y, lg, nf = logits.detach(), spread(loss.detach()), spread(norms)
        full_mask = mask if rows is None else spread(torch.ones(len(rows), dtype=torch.bool, device=self.device))
        m = full_mask.to(self.dtype)
        acc["loss_g"].append(lg.nan_to_num(0.0) * m)
        acc["loss_g_bad"].append((~torch.isfinite(lg) & full_mask).to(self.dtype))
        acc["grad_g"].append(nf.nan_to_num(0.0) * m)
        acc["grad_g_max"].append(torch.where(full_mask, nf, torch.zeros_like(nf)))
        # -log D(G(z)) is clamped from below like D's real term, log(1 - D(G(z))) from above
        eps = sel(self.clamp_eps)
        hits = torch.where(sel(self.non_saturating), self._hits(y, eps, True, rows), self._hits(y, eps, False, rows))
        acc["clamp_hits_g"].append(spread(hits.to(self.dtype)) * m)
        acc["bad"].append((~spread(ok) & full_mask).to(self.dtype) if rows is not None else
                          (~ok & mask).to(self.dtype))
        return sat, norms

    def batch(self, x: torch.Tensor, step: int, acc: dict) -> None:
        """One batch: D on real, D on fake, then each member's G phase (masks for the schedule). `x` is
        [P, rows, pixels]: the seed's batch_size = X.shape[0], so an epoch's last batch may be smaller."""
        self.rows = x.shape[1]
        acc["rows"].append(self.rows)
        upd = self.training & ~self.hung
        z0 = self.noise(step, 0)
        if self.buffered and self.any_eval_only:  # G's gradient from D's fake step is kept for some members
            fake_input = lambda: self.d_input(self.gen(z0), step, 1)  # noqa: E731
        else:
            with torch.no_grad():
                fake = self.gen(z0)
            fake_input = lambda: self.d_input(fake, step, 1)  # noqa: E731
        loss_real = self._d_update(lambda: self.d_input(x, step, 0), True, upd, acc)
        loss_fake = self._d_update(fake_input, False, upd, acc)
        tmp = loss_real + loss_fake
        acc["loss_d"].append(tmp)
        # The schedule's readings, per member (gan_core.schedule.AdaptiveRule is the reference).
        read = tmp
        if self.any_loss_sum:  # the work only where some member reads a mean of D's losses
            self.d_loss_sum = torch.where(upd, self.d_loss_sum + tmp, self.d_loss_sum)
            self.d_loss_n += upd.long()
            read = torch.where(self.epoch_mean, self.d_loss_sum / self.d_loss_n.clamp(min=1),
                               torch.where(self.prev_epoch, self.tmp_prev, tmp))
        counting = self.adaptive & upd
        if self.any_every_batch:
            self.rest_k = torch.where(counting & self.every_batch, (self.rest_k - 1).clamp(min=0), self.rest_k)

        self.batch_count += upd.long()
        due = self.batch_count % self.d_steps == 0
        allowed = torch.where(self.adaptive, (self.rest_k <= 0) & (read < self.d_thr), due) & upd
        active = allowed.clone()
        l = torch.zeros(self.P, device=self.device, dtype=self.dtype)
        steps = torch.zeros(self.P, device=self.device, dtype=torch.int64)
        zero_run = torch.zeros(self.P, device=self.device, dtype=torch.int64)
        hung_bound = torch.zeros(self.P, device=self.device, dtype=torch.bool)
        hung_zero = torch.zeros(self.P, device=self.device, dtype=torch.bool)
        draw = 0
        while True:
            n_active = int(active.sum())  # the one host read per inner iteration
            if not n_active:
                break
            draw += 1
            if not self.buffered and n_active < COMPACT_BELOW * self.P:
                rows = active.nonzero().flatten()
                sat, gn = self._g_step(step, draw, active, acc, rows)
                l = l.index_put((rows,), sat)
                norm = torch.zeros(self.P, device=self.device, dtype=gn.dtype).index_put((rows,), gn)
            else:
                sat, norm = self._g_step(step, draw, active, acc)
                l = torch.where(active, sat, l)
            steps += active.long()
            zero_run = torch.where(active, torch.where(norm == 0, zero_run + 1, 0), zero_run)
            going = active & self.adaptive & (l.abs() < self.g_thr) & (steps < self.cap)
            at_bound = going & self.uncapped & (steps >= self.bound)
            stuck = going & self.uncapped & ~at_bound & (zero_run >= ZERO_GRADIENT_STEPS)
            hung_bound |= at_bound
            hung_zero |= stuck
            active = going & ~at_bound & ~stuck
        trained = steps > 0
        capped = trained & self.adaptive & ~self.uncapped & (l.abs() < self.g_thr)
        new_k = torch.where(torch.isfinite(l), torch.floor(1 + l.abs().double() * self.k_scale.double()).clamp(
            max=float(REST_K_MAX)), torch.full_like(self.rest_k, float(REST_K_MAX)))
        kept = torch.where(self.every_batch, self.rest_k, (self.rest_k - 1).clamp(min=0))
        self.rest_k = torch.where(counting, torch.where(trained, new_k, kept), self.rest_k)
        self.hung |= hung_bound | hung_zero  # the literal loop never returned: the member trains no more
        acc["g_steps"].append(steps.to(self.dtype))
        acc["g_batches"].append(trained.to(self.dtype))
        acc["g_capped"].append(capped.to(self.dtype))
        acc["g_hung_bound"].append(hung_bound.to(self.dtype))
        acc["g_hung_zero"].append(hung_zero.to(self.dtype))
        acc["g_phase"].append(steps.to(self.dtype))
        acc["updated"].append(upd.to(self.dtype))

    # -- epochs -------------------------------------------------------------------------------------
    new_accumulator = staticmethod(epoch_signals.new_accumulator)

    def train_epoch(self, epoch: int, global_step: int, active: list[bool]) -> list[EpochRecord | None]:
        self.training = torch.tensor(active, device=self.device)
        if self.any_instance_noise:
            stds = [cures.instance_noise_std(c.cures.instance_noise, epoch, c.budget.epochs) for c in self.configs]
            self.noise_std = torch.tensor(stds, device=self.device, dtype=self.dtype)
            self.noisy = None if all(s > 0 for s in stds) else \
                torch.tensor([p for p, s in enumerate(stds) if s > 0], device=self.device, dtype=torch.long)
        acc = self.new_accumulator()
        self.hung = torch.zeros_like(self.hung)
        self.d_loss_sum, self.d_loss_n = torch.zeros_like(self.d_loss_sum), torch.zeros_like(self.d_loss_n)
        self.rest_k = torch.where(self.reset_k & self.adaptive & self.training, torch.zeros_like(self.rest_k), self.rest_k)
        perm = rng.permutation(self.seeds, (rng.STREAM_DATA, epoch), len(self.data))
        t0 = time.perf_counter()
        with precision.matmuls(self.configs[0].precision, self.device):
            for b in range(self.steps_per_epoch):
                self.batch(self._pixels(self.data[perm[:, b * self.B:(b + 1) * self.B]]), global_step + b, acc)
        self.rows = self.B
        if self.any_loss_sum:  # the epoch's mean D loss: what the next epoch reads (tmp_loss = previous_epoch)
            self.tmp_prev = torch.where(self.prev_epoch & (self.d_loss_n > 0), self.d_loss_sum / self.d_loss_n.clamp(min=1),
                                        self.tmp_prev)
        stats = self.summarise(acc)  # the epoch's one device read
        stats |= self.cure_probes()
        finite = self._weights_finite()
        seconds = time.perf_counter() - t0
        records: list[EpochRecord | None] = []
        for p in range(self.P):
            if not active[p]:
                records.append(None)
                continue
            s = {k: v[p] for k, v in stats.items()}
            nb = int(s.pop("updated"))
            records.append(EpochRecord(
                epoch=epoch + 1, step=global_step + self.steps_per_epoch, weights_finite=bool(finite[p]),
                batches=nb, seconds=seconds, samples_per_s=nb * self.B / max(seconds, 1e-9),
                real_target=1 - self.configs[p].cures.label_smoothing, **s))
        return records

    def summarise(self, acc: dict) -> dict[str, list]:
        """Per-member epoch statistics from the accumulated signals, in one device read."""
        return epoch_signals.summarise(acc, self.P, self.device)

    @torch.no_grad()
    def _update_ema(self, stepped: torch.Tensor) -> None:
        """Each member's average of G after a G step (Trainer's SeedStep._update_ema, per member)."""
        m = stepped & self.ema_on
        self.ema_updates = torch.where(m, self.ema_updates + 1, self.ema_updates)
        weight = (1 - cures.ema_decay(self.ema_decay, self.ema_updates)).to(self.dtype)
        for e, p in zip(self.ema_g, self.G.params):
            e.copy_(torch.where(m.view((-1,) + (1,) * (e.dim() - 1)), torch.lerp(e, p.detach(), weight.view(
                (-1,) + (1,) * (e.dim() - 1))), e))

    @torch.no_grad()
    def cure_probes(self) -> dict[str, list[float]]:
        """Per member, as Trainer.cure_probes: D's largest singular values, G's distance from its average,
        and the epoch's instance-noise std; one device read."""
        D = self._sn(self.D, None, False) if self.any_sn else self.D
        rows = [cures.top_singular_value(w.detach()) for w in D.weights]
        if self.any_ema:
            diff = member_norms([p.detach() - e for p, e in zip(self.G.params, self.ema_g)])
            rows.append(torch.where(self.ema_on, diff / member_norms([p.detach() for p in self.G.params]), 0.0))
        else:
            rows.append(torch.zeros(self.P, device=self.device, dtype=self.dtype))
        rows.append(self.noise_std)
        d_sv_1, d_sv_2, ema, std = torch.stack([r.double() for r in rows]).cpu().tolist()
        return {"d_sv_1": d_sv_1, "d_sv_2": d_sv_2, "ema_distance": ema, "noise_std": std}

    def _weights_finite(self) -> list[bool]:
        parts = [torch.isfinite(t).flatten(1).all(1) for t in self.G.params + self.D.params]
        return torch.stack(parts).all(0).cpu().tolist()

    @torch.no_grad()
    def generate(self, p: int, n: int) -> torch.Tensor:
        """Member p's n images in [0, 1] from its fixed evaluation noise (as Trainer.generate)."""
        z = rng.normal(self.seeds[p:p + 1], (rng.STREAM_EVAL, 0, 0), (n, self.z_dim), self.dtype)
        params = self.ema_g if self.any_ema and bool(self.ema_on[p]) else self.G.params  # the average is scored
        G = StackedMLP([w[p:p + 1] for w in params[0::2]], [b[p:p + 1] for b in params[1::2]])
        out = G.layer(2, torch.relu(G.layer(1, torch.relu(G.layer(0, z)))))[0]
        g_output = self.configs[p].model.g_output
        out = to_pixels(G_OUTPUT[g_output](out), g_output)
        return out.float().cpu()

    # -- a member's state, in the checkpoint layout shared with the reference trainer ---------------
    def member_state(self, p: int) -> MemberState:
        return population_state.member_state(self, p)

    def load_member_state(self, p: int, state: MemberState) -> None:
        population_state.load_member_state(self, p, state)

    @torch.no_grad()
    def reset_member(self, p: int) -> None:
        c = self.configs[p]
        G, D = build_models(c.model, self.image_dim, c.seed, torch.device("cpu"), torch.float32,
                            spectral_norm=c.cures.spectral_norm)
        for net, module in ((self.G, G), (self.D, D)):
            fresh = [t for m in module.net if isinstance(m, torch.nn.Linear) for t in (m.weight.T, m.bias)]
            for t, v in zip(net.params, fresh):
                t[p] = v.to(t)
        if self.any_sn and c.cures.spectral_norm:
            for i, (u, v) in enumerate(D.sn_vectors()):
                self.sn_u[i][p], self.sn_v[i][p] = u.to(self.sn_u[i]), v.to(self.sn_v[i])
        if self.any_ema:
            for e, t in zip(self.ema_g, self.G.params):
                e[p] = t.detach()[p]
            self.ema_updates[p] = 0.0
        for opt in (self.opt_g, self.opt_d):
            for t in opt.m + opt.v:
                t[p] = 0.0
            opt.step[p] = 0.0
        for grads in (self.grad_g, self.grad_d):
            for g in grads or []:
                g[p] = 0.0
        self.rest_k[p], self.batch_count[p], self.alive[p], self.hung[p] = 0.0, 0, True, False
        self.tmp_prev[p] = TMP_LOSS_START

    @torch.no_grad()
    def subset(self, keep: Sequence[int]) -> PopulationTrainer:
        """A population of members `keep` only, each carried over through its checkpoint layout (the loop
        drops members whose runs ended: masked, they cost what live members do)."""
        sub = PopulationTrainer([self.configs[p] for p in keep], self.dataset, self.evaluator, self.callbacks,
                                self.thresholds, self.adam_impl, self.log)
        for i, p in enumerate(keep):
            sub.load_member_state(i, self.member_state(p))
            sub.alive[i] = self.alive[p]  # a run that went non-finite stays frozen
        return sub

    # -- the whole run --------------------------------------------------------------------------------
    def run(self, checkpoints: Sequence | None = None, checkpoint_every: int = 2,
            stopper: loop.Stopper | None = None) -> list[RunResult]:
        return loop.run(self, self.evaluator, self.thresholds, "population", self.callbacks, checkpoints,
                        checkpoint_every, self.log, stopper)


