"""One member's training state, as both engines give and take it (checkpoints, a population's members
moved between engines or populations): the schema, declared once. On disk it stays a plain dict of
tensors and numbers, so `torch.load(weights_only=True)` reads it without unpickling any class."""

from __future__ import annotations

import math
from typing import Any, TypedDict

import torch

from .schedule import REST_K_MAX

Tensors = list[torch.Tensor]


class RuleState(TypedDict):
    """The adaptive rule's counters (None under a fixed schedule on the reference engine)."""

    rest_k: float | None
    """Batches G still rests."""
    batches: int | None
    """Batches the rule has seen."""
    tmp_prev: float
    """The previous epoch's mean D loss, which `tmp_loss = previous_epoch` reads next (TMP_LOSS_START at first)."""


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


class StateError(ValueError):
    """A member state (a checkpoint's) that does not fit the member it would be loaded into."""


def _tensor(value: Any, shape: tuple[int, ...], dtype: torch.dtype, what: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise StateError(f"{what} is {type(value).__name__}, not a tensor")
    if tuple(value.shape) != shape:
        raise StateError(f"{what} has shape {tuple(value.shape)}, expected {shape}")
    if value.dtype != dtype:
        raise StateError(f"{what} is {value.dtype}, expected {dtype}")
    if not bool(torch.isfinite(value).all()):
        raise StateError(f"{what} holds a NaN or an infinity")


def _count(value: Any, low: float, high: float, what: str) -> None:
    """A whole number in [low, high] (ints and integral floats: both engines write one or the other)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value) or not low <= value <= high:
        raise StateError(f"{what} is {value!r}, expected a whole number from {low:g} to {high:g}")


def _tensors(values: Any, like: list[torch.Tensor], what: str, optional: bool = False) -> None:
    if not isinstance(values, list) or len(values) != len(like):
        n = len(values) if isinstance(values, list) else type(values).__name__
        raise StateError(f"{what} holds {n} entries, expected {len(like)}")
    for i, (v, t) in enumerate(zip(values, like)):
        if v is None and optional:
            continue
        _tensor(v, tuple(t.shape), t.dtype, f"{what}[{i}]")


def check(state: Any, fresh: MemberState, max_batches: int) -> MemberState:
    """`state` if it fits the member whose present state is `fresh` (the engine's own `member_state(p)`,
    which gives every shape, dtype and what is on): the schema's keys, every tensor's shape, dtype and
    count, every value finite, each optimiser slot one entry per parameter, Adam's second moments and
    step counts non-negative, the adaptive rule's state in range (`max_batches`: the run's batches).
    Both engines call it before loading anything, so a file either engine refuses, both refuse."""
    checked(state)
    for net in ("G", "D"):
        params = fresh[net]
        _tensors(state[net], params, net)
        _tensors(state[f"grad_{net}"], params, f"grad_{net}", optional=True)
        slots, want = state[f"opt_{net}"], fresh[f"opt_{net}"]
        if not isinstance(slots, dict) or set(slots) != set(want):
            raise StateError(f"opt_{net} holds slots {sorted(slots) if isinstance(slots, dict) else slots!r}, "
                             f"expected {sorted(want)} (another optimiser's state)")
        for name, values in slots.items():
            if name == "step":
                if not isinstance(values, list) or len(values) != len(params):
                    raise StateError(f"opt_{net}.step holds {len(values) if isinstance(values, list) else values!r} "
                                     f"entries, expected {len(params)}")
                for i, v in enumerate(values):
                    if v is not None:
                        _count(v, 0, 2**53, f"opt_{net}.step[{i}]")
                continue
            _tensors(values, params, f"opt_{net}.{name}", optional=True)
            if name == "exp_avg_sq" and any(v is not None and bool((v < 0).any()) for v in values):
                raise StateError(f"opt_{net}.exp_avg_sq holds a negative second moment")
    rule = state["rule"]
    if not isinstance(rule, dict) or set(rule) != set(RuleState.__annotations__):
        raise StateError(f"rule holds {rule!r}, expected {', '.join(RuleState.__annotations__)}")
    if not isinstance(rule["tmp_prev"], (int, float)) or isinstance(rule["tmp_prev"], bool) \
            or not math.isfinite(rule["tmp_prev"]):
        raise StateError(f"rule.tmp_prev is {rule['tmp_prev']!r}, expected a finite number")
    if rule["rest_k"] is not None:
        _count(rule["rest_k"], 0, REST_K_MAX, "rule.rest_k")
    if rule["batches"] is not None:
        _count(rule["batches"], 0, max_batches, "rule.batches")
    for key, parts in (("sn", ("u", "v")), ("ema", ("G",))):
        if (state[key] is None) != (fresh[key] is None):
            raise StateError(f"{key} is {'missing' if state[key] is None else 'present'} in the state, but "
                             f"{'on' if fresh[key] is not None else 'off'} for this member")
        if state[key] is not None:
            if not isinstance(state[key], dict):
                raise StateError(f"{key} is {type(state[key]).__name__}, not a dict")
            for part in parts:
                _tensors(state[key].get(part), fresh[key][part], f"{key}.{part}")
    if state["ema"] is not None:
        _count(state["ema"].get("updates"), 0, 2**53, "ema.updates")
    return state
