"""Every toggle the trainer exposes for a pitfall or a cure, declared once: its config key, the claim it
tests, what each engine does with it, the probes that show it acting, and the setting the bench and
the equivalence tests turn it on with. The report's cure keys, the claims' cure rows, the bench's
cure rows and the tests' member lists are built from this table; a test checks that the config, the
built-in studies and the population engine cover exactly its keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Toggle:
    """One pitfall toggle or cure."""

    key: str
    """Its flat config key."""
    claim: str
    """The claim it tests (sweeps/study/claims.py): a pitfall's number, "adaptive", or the cure's own key."""
    kind: str
    """pitfall (the seed's) or cure (the field's)."""
    on: Any
    """A setting other than the default: a cure turned on (at the cures study's strength), or a pitfall
    toggle set the other way its study contrasts (what `gan-sweep bench` times for a cure)."""
    probes: tuple[str, ...]
    """The per-epoch probes (EpochRecord fields) that show it acting."""
    engines: str
    """What both engines do with it (the reference trainer, and the population per member)."""
    title: str = ""
    """A cure's row title (the claims table, the atlas)."""
    text: str = ""
    """What a cure's paper says it does (the claim the cures study judges)."""


TOGGLES: tuple[Toggle, ...] = (
    Toggle("clamp", "1", "pitfall", "none", ("clamp_rate",),
           "clamp D's output before the log (clamp), not at all (none), or use stable logits (logits)"),
    Toggle("clip_d", "2", "pitfall", None, ("grad_d", "grad_d_max"), "clip D's gradient norm (off: None)"),
    Toggle("clip_g", "2", "pitfall", None, ("grad_g", "grad_g_max"), "clip G's gradient norm (off: None)"),
    Toggle("d_steps", "3", "pitfall", 5, ("loss_d", "d_real", "d_fake"), "D updates per batch (fixed schedule)"),
    Toggle("schedule", "adaptive", "pitfall", "fixed", ("g_steps", "g_capped", "g_phase_max"),
           "the seed's adaptive rest/inner-loop rule, or a fixed k:1"),
    Toggle("lr_d", "4", "pitfall", 1e-5, ("loss_d", "loss_g"), "D's learning rate"),
    Toggle("lr_g", "4", "pitfall", 1e-5, ("loss_d", "loss_g"), "G's learning rate"),
    Toggle("freeze", "5", "pitfall", "eval_only", ("frozen_grad_g", "frozen_grad_d"),
           "freeze the other net by requires_grad_(False) or only eval()"),
    Toggle("zero_grad", "5", "pitfall", "own_after_step", ("leak_g", "leak_d"),
           "which nets' gradients are cleared, and when"),
    Toggle("spectral_norm", "spectral_norm", "cure", True, ("d_sv_1", "d_sv_2"),
           "D's weights divided by their largest singular value, one power iteration per D update",
           "Spectral norm on D", "Dividing each of D's weights by its largest singular value keeps D from "
           "overpowering G and stabilises training (Miyato et al. 2018)."),
    Toggle("r1_gamma", "r1_gamma", "cure", 1.0, ("r1_penalty",),
           "gamma / 2 * E|grad_x D(x)|^2 on real data added to D's loss",
           "R1 penalty", "Penalising D's gradient on real data, gamma / 2 * |grad D(x)|^2, makes GAN training "
           "converge (Mescheder et al. 2018)."),
    Toggle("label_smoothing", "label_smoothing", "cure", 0.1, ("real_target",),
           "D's target on real data is 1 - smoothing",
           "One-sided label smoothing", "Aiming D at 0.9 instead of 1 on real data keeps it from overconfidence "
           "(Salimans et al. 2016)."),
    Toggle("instance_noise", "instance_noise", "cure", 0.1, ("noise_std",),
           "Gaussian noise on D's inputs, annealed linearly to 0 over the epochs",
           "Instance noise", "Gaussian noise on D's inputs, annealed to zero, makes D's task well-posed early on "
           "(Sønderby et al. 2016)."),
    Toggle("g_ema", "g_ema", "cure", 0.999, ("ema_distance",),
           "an exponential moving average of G's weights is what the evaluator scores",
           "EMA of G", "An exponential moving average of G's weights gives better samples than G itself "
           "(Yazıcı et al. 2019)."),
)
"""The seed's pitfalls in claim order, then the field's cures in the order the cures study lists them."""

BY_KEY = {t.key: t for t in TOGGLES}
CURES = tuple(t for t in TOGGLES if t.kind == "cure")
"""The field's cures."""
CURE_KEYS = tuple(t.key for t in CURES)
"""Their config keys (the cures study's columns; the report's cure arms)."""
CURE_PROBES = tuple(p for t in CURES for p in t.probes)
"""The probes only the cures move."""
