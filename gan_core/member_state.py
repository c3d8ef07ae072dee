"""One member's training state, as both engines give and take it (checkpoints, a population's members
moved between engines or populations): the schema, declared once. On disk it stays a plain dict of
tensors and numbers, so `torch.load(weights_only=True)` reads it without unpickling any class."""

from __future__ import annotations

from typing import Any, TypedDict

import torch

Tensors = list[torch.Tensor]


class RuleState(TypedDict):
    """The adaptive rule's counters (None under a fixed schedule on the reference engine)."""

    rest_k: float | None
    """Batches G still rests."""
    batches: int | None
    """Batches the rule has seen."""


class SpectralState(TypedDict):
    """Spectral norm's power-iteration vectors, one pair per D layer."""

    u: Tensors
    """Left vectors ([out] per layer)."""
    v: Tensors
    """Right vectors ([in] per layer)."""


class EmaState(TypedDict):
    """The average of G's weights that the evaluator scores."""

    G: Tensors
    """The averaged weights, in nn.Linear layout."""
    updates: int
    """Updates averaged so far (the warm-up)."""


class MemberState(TypedDict):
    """Everything a member needs to go on training exactly as it would have."""

    G: Tensors
    """G's weights and biases, in nn.Linear layout."""
    D: Tensors
    """D's weights and biases, in nn.Linear layout."""
    opt_G: dict[str, Any]
    """G's optimiser slots (torch.optim's names: step, exp_avg, exp_avg_sq or momentum_buffer)."""
    opt_D: dict[str, Any]
    """D's optimiser slots."""
    grad_G: list[torch.Tensor | None]
    """G's .grad as the step left it (a gradient left uncleared carries into the next backward)."""
    grad_D: list[torch.Tensor | None]
    """D's .grad as the step left it."""
    rule: RuleState
    """The adaptive rule's counters."""
    sn: SpectralState | None
    """Spectral norm's vectors (None when off)."""
    ema: EmaState | None
    """The average of G (None when off)."""


KEYS = frozenset(MemberState.__annotations__)


def checked(state: dict) -> MemberState:
    """The state, if it has exactly the schema's keys (an engine that forgot one, or a stale checkpoint,
    fails here by name, not deep in a load)."""
    if not isinstance(state, dict) or set(state) != KEYS:
        got = set(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"member state does not match the schema: missing {sorted(KEYS - set(state or {}))}, "
                         f"unexpected {sorted(set(state or {}) - KEYS) if isinstance(state, dict) else got}")
    return state  # type: ignore[return-value]
