"""The samplers and pruners a study file may name: Optuna's own, each declared once with its parameters.

    [sampler]
    kind = "tpe"                 # SAMPLER_NOTES: grid | tpe | random | gp | cmaes | qmc
    seed = 0

    [pruner]                     # optional: off by default
    kind = "hyperband"           # PRUNERS: median | percentile | successive_halving | hyperband | threshold | patient
    min_resource = 5             # the pruner's own parameters, by Optuna's names; "auto" resources are
    reduction_factor = 3         # resolved from the profile's epochs before any trial runs

    # patient waits around another pruner (or none: patience alone)
    # [pruner.wrapped]
    # kind = "median"

A pruner's step is the epoch (1-based) and its value the study's objective at each evaluated epoch. The
parameters' names and defaults are Optuna's (tests/test_search.py holds them to Optuna's signatures); the
bounds are those Optuna's constructors check, checked here first so that a bad value is one line before
anything is created. This module imports no Optuna (`gan-sweep show` and `bench` load study files).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SAMPLER_NOTES = {
    "grid": "every combination enqueued once; never Optuna's GridSampler, which can run a point twice across workers",
    "tpe": "Optuna's TPESampler",
    "random": "Optuna's RandomSampler",
    "gp": "Optuna's GPSampler: a Gaussian process, random until 10 trials have completed",
    "cmaes": "Optuna's CmaEsSampler (the cmaes package): the continuous ranges; values at random",
    "qmc": "Optuna's QMCSampler: a scrambled Sobol sequence, one point per trial",
}
"""Every sampler a study file may name, and what it is."""

REQUIRED = object()
"""A pruner parameter Optuna has no default for: the study file must give it."""


@dataclass(frozen=True)
class PrunerParam:
    """One parameter of one of Optuna's pruners."""

    name: str
    """The keyword argument Optuna's pruner takes (and the study file's key)."""
    kind: type
    """int or float."""
    default: Any
    """Optuna's default (REQUIRED: it has none; None: left unset)."""
    low: float | None = None
    """The smallest value allowed (None: unbounded)."""
    high: float | None = None
    """The largest value allowed (None: unbounded)."""
    auto: bool = False
    """Also takes "auto", which Optuna estimates once a trial has completed (none has in a population's first
    epochs), and gan-sweep resolves from the profile's epochs before any trial runs (`PrunerSpec.resolved`)."""


@dataclass(frozen=True)
class PrunerKind:
    """One of Optuna's pruners, as a study file names it."""

    name: str
    """Its name in `[pruner] kind = ...`."""
    optuna: str
    """Its class in optuna.pruners."""
    params: tuple[PrunerParam, ...]
    """Its parameters (patient's wrapped pruner apart: a table of its own)."""
    how: str
    """How it decides, in a few words (`gan-sweep show`)."""


_STEPS = (PrunerParam("n_startup_trials", int, 5, 0), PrunerParam("n_warmup_steps", int, 0, 0),
          PrunerParam("interval_steps", int, 1, 1), PrunerParam("n_min_trials", int, 1, 1))
PRUNERS = {k.name: k for k in (
    PrunerKind("median", "MedianPruner", _STEPS,
               "prunes a run whose best value so far is worse than the median of the completed trials at that epoch "
               "(in a population: of those completed before it started, none in the first)"),
    PrunerKind("percentile", "PercentilePruner", (PrunerParam("percentile", float, REQUIRED, 0, 100), *_STEPS),
               "prunes a run whose best value so far is worse than that percentile of the completed trials at that epoch"),
    PrunerKind("successive_halving", "SuccessiveHalvingPruner",
               (PrunerParam("min_resource", int, "auto", 1, auto=True), PrunerParam("reduction_factor", int, 4, 2),
                PrunerParam("min_early_stopping_rate", int, 0, 0), PrunerParam("bootstrap_count", int, 0, 0)),
               "at each rung (epoch min_resource x reduction_factor^k) keeps a run only among the best 1/reduction_factor "
               "of the runs that reached the rung before it (asynchronous by design)"),
    PrunerKind("hyperband", "HyperbandPruner",
               (PrunerParam("min_resource", int, 1, 1), PrunerParam("max_resource", int, "auto", 1, auto=True),
                PrunerParam("reduction_factor", int, 3, 2), PrunerParam("bootstrap_count", int, 0, 0)),
               "successive halving in brackets of several aggressiveness, each trial's bracket fixed by its number"),
    PrunerKind("threshold", "ThresholdPruner",
               (PrunerParam("lower", float, None), PrunerParam("upper", float, None),
                PrunerParam("n_warmup_steps", int, 0, 0), PrunerParam("interval_steps", int, 1, 1)),
               "prunes a run whose latest value falls outside fixed bounds"),
    PrunerKind("patient", "PatientPruner",
               (PrunerParam("patience", int, REQUIRED, 0), PrunerParam("min_delta", float, 0.0, 0)),
               "prunes a run with no improvement for `patience` evaluations that its wrapped pruner would prune (alone: "
               "every such run)"),
)}
"""Every pruner a study file may name: Optuna's own, with their parameters."""


@dataclass(frozen=True)
class PrunerSpec:
    """A study's pruner as its file gives it (validated)."""

    kind: str
    """A key of PRUNERS."""
    params: dict[str, Any]
    """The parameters the file sets (the others take Optuna's defaults)."""
    wrapped: PrunerSpec | None = None
    """patient only: the pruner it waits around (None: patience alone)."""

    def resolved(self, epochs: int) -> dict[str, Any]:
        """Every parameter's value for a profile of `epochs` epochs: the file's, else Optuna's default; an "auto"
        resource as Optuna would estimate it from runs of that length (hyperband's max_resource: the last epoch;
        successive halving's min_resource: a hundredth of it, at least 1). Unset ones (None) are left out."""
        out = {p.name: self.params.get(p.name, p.default) for p in PRUNERS[self.kind].params}
        if out.get("max_resource") == "auto":
            out["max_resource"] = epochs
        if out.get("min_resource") == "auto":
            out["min_resource"] = max(epochs // 100, 1)
        return {k: v for k, v in out.items() if v is not None}

    def settings(self, epochs: int | None = None) -> str:
        """Every parameter and its value (resolved for `epochs` when given), e.g. `min_resource 5, ...`."""
        if epochs:
            values = self.resolved(epochs)
        else:
            values = {p.name: self.params.get(p.name, p.default) for p in PRUNERS[self.kind].params}
        text = ", ".join(f"{k} {v}" for k, v in values.items() if v is not None)
        if self.kind == "patient":
            text += f"; around {self.wrapped.describe(epochs)}" if self.wrapped is not None else "; alone"
        return text

    def describe(self, epochs: int | None = None) -> str:
        """One line: the kind, Optuna's class and every parameter (resolved for `epochs` when given)."""
        return f"{self.kind} ({PRUNERS[self.kind].optuna}: {self.settings(epochs)})"

    def as_dict(self) -> dict[str, Any]:
        """What a study stores (and fingerprints) of its pruner."""
        return {"kind": self.kind, "params": dict(self.params),
                "wrapped": self.wrapped.as_dict() if self.wrapped is not None else None}

    def first_epoch(self, epochs: int) -> int:
        """The first epoch at which it can prune a run of `epochs` epochs (past the budget: it never acts)."""
        v = self.resolved(epochs)
        if self.kind == "hyperband":
            return v["min_resource"]
        if self.kind == "successive_halving":
            return v["min_resource"] * v["reduction_factor"] ** v["min_early_stopping_rate"]
        if self.kind == "patient":  # it needs patience + 2 evaluations, each at least an epoch apart
            return max(v["patience"] + 2, self.wrapped.first_epoch(epochs) if self.wrapped else 1)
        return max(v["n_warmup_steps"], 1)


def parse(where: str, table: Any) -> PrunerSpec:
    """[pruner] (or patient's [pruner.wrapped]) into a PrunerSpec; a ValueError naming the key otherwise."""
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table")
    kinds = [k for k in PRUNERS if not (where != "pruner" and k == "patient")]
    kind = table.get("kind")
    if kind not in kinds:
        raise ValueError(f"{where}.kind must be one of {', '.join(kinds)}, "
                         f"{'missing' if kind is None else f'got {kind!r}'}")
    decl = PRUNERS[kind]
    allowed = {"kind"} | {p.name for p in decl.params} | ({"wrapped"} if kind == "patient" else set())
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValueError(f"unknown key {where}.{unknown[0]} (the {kind} pruner takes: "
                         f"{', '.join(sorted(allowed - {'kind'}))})")
    params: dict[str, Any] = {}
    for p in decl.params:
        key, value = f"{where}.{p.name}", table.get(p.name)
        if p.name not in table:
            if p.default is REQUIRED:
                raise ValueError(f"{key} is needed by the {kind} pruner")
            continue
        if p.auto and value == "auto":
            params[p.name] = value
            continue
        what = ("an integer" if p.kind is int else "a number") + (' or "auto"' if p.auto else "")
        if isinstance(value, bool) or not isinstance(value, (int,) if p.kind is int else (int, float)):
            raise ValueError(f"{key} must be {what}, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number, got {value!r}")
        if (p.low is not None and value < p.low) or (p.high is not None and value > p.high):
            bounds = f"from {p.low:g} to {p.high:g}" if p.high is not None else f">= {p.low:g}"
            raise ValueError(f"{key} must be {bounds}, got {value!r}")
        params[p.name] = p.kind(value)
    if kind == "threshold":
        if "lower" not in params and "upper" not in params:
            raise ValueError(f"{where} (threshold) needs lower, upper or both")
        if params.get("lower", -math.inf) > params.get("upper", math.inf):
            raise ValueError(f"{where}.lower {params['lower']:g} is above its upper {params['upper']:g}")
    if kind == "hyperband" and isinstance(params.get("max_resource"), int) and \
            params["max_resource"] < params.get("min_resource", 1):
        raise ValueError(f"{where}.max_resource {params['max_resource']} is below its min_resource "
                         f"{params.get('min_resource', 1)}")
    wrapped = parse(f"{where}.wrapped", table["wrapped"]) if "wrapped" in table else None
    return PrunerSpec(kind, params, wrapped)
