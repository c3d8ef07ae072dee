"""Study files (TOML) validated into a typed, frozen spec.

    name = "lr-study"
    description = "..."
    claims = [4]                                  # the seed's claims it tests (sweeps/study/claims.py; optional)
    seeds = [0, 1]                                # every configuration runs once per seed
    objective = { metric = "fld", direction = "minimize" }
    baseline = { lr_d = 1e-4 }                    # the seed's setting of the swept keys (for reports)

    [sampler]
    kind = "grid"                                 # grid (every combination, enqueued) | tpe | random | gp | cmaes | qmc
    seed = 0                                      # seeds the sampler (sweeps/study/pruners.py)

    [pruner]                                      # optional, off by default: one of Optuna's pruners and its
    kind = "hyperband"                            # parameters (sweeps/study/pruners.py); none in a study of claims
    min_resource = 5

    [space]                                       # keys are run-config keys (gan-sweep train --help)
    lr_d = { values = [1e-5, 1e-4], tie = ["lr_g"] }   # grid axis / choice; tie: same value elsewhere
    clip_d = { values = ["off", 1.0] }
    lr_g = { log_uniform = [1e-6, 1e-2] }         # sampled studies only (not grid)
    beta1 = { uniform = [0.0, 0.9] }

    # or, instead of [space], an explicit list of configurations (grid sampler), e.g. an ablation:
    # configs = [{ clamp = "clamp" }, { clamp = "none" }, { clip_d = "off" }]   # unset keys: fixed/default
    # a config may name its own seeds (a subset of the study's): { g_output = "tanh", seeds = [0, 1] }

    [fixed]                                       # run-config overrides for every trial
    clamp = "logits"

    [profiles.quick]                              # budget per profile; quick on a CPU, full on a GPU
    epochs = 20
    trials = 12                                   # sampled studies: configurations to sample
    seeds = [0]                                   # optional overrides: seeds, fixed (merged), space (replaced)

Every mistake is a SpecError naming the file and the key, in one line.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from gan_core.config import FLAT_KEYS, MAX_SEED, ConfigError, RunConfig
from sweeps.errors import UserError
from sweeps.paths import NAME
from sweeps.study.claims import claim_ids
from sweeps.study.pruners import SAMPLER_NOTES, PrunerSpec
from sweeps.study.pruners import parse as parse_pruner

SAMPLERS = tuple(SAMPLER_NOTES)
PROFILES = ("quick", "full")
METRICS = ("fld", "score", "coverage", "class_kl", "junk", "precision", "recall", "confidence", "legible", "classes",
           "distinct", "spread")
BUDGET_KEYS = ("epochs", "steps_per_epoch", "eval_every", "eval_samples")
NOT_SWEEPABLE = ("seed", "device", "dtype", "data_dir")
BALANCE_LIMIT = 5_000
"""Grids up to this size are enqueued in a balanced order (see StudySpec.balanced_grid)."""
MAX_SAMPLER_SEED = 2**32 - 1
"""Optuna's samplers seed numpy, which takes 32-bit seeds."""
MAX_STUDY_FILE = 1_000_000
"""Bytes: the largest study file read (the built-in ones are under 5,000)."""
MAX_DESCRIPTION = 4000
"""A study's description becomes its MLflow experiment's note, a tag (MLflow keeps 8,000 characters)."""


class SpecError(UserError):
    """A study file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class Param:
    """One swept key: a list of values (grid axis or choice) or a continuous range."""

    name: str
    """The run-config key it sets."""
    kind: str
    """values, log_uniform or uniform."""
    values: tuple = ()
    """The values (kind == values)."""
    low: float = 0.0
    """Range start (continuous kinds)."""
    high: float = 0.0
    """Range end (continuous kinds)."""
    tie: tuple[str, ...] = ()
    """Other keys that take the same value (e.g. lr_g tied to lr_d)."""

    def suggest(self, trial) -> Any:
        """Ask an Optuna trial for this parameter's value (fixed when the trial was enqueued)."""
        if self.kind == "values":
            return trial.suggest_categorical(self.name, list(self.values))
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "log_uniform")


@dataclass(frozen=True)
class Profile:
    """The budget of one profile."""

    name: str
    """quick or full."""
    epochs: int
    """Epochs per trial."""
    steps_per_epoch: int | None = None
    """Cap on batches per epoch (None: the whole data set)."""
    eval_every: int = 1
    """Evaluate quality every this many epochs."""
    eval_samples: int = 2000
    """Samples per evaluation."""
    trials: int | None = None
    """A sampled study (not grid): how many configurations to sample."""


@dataclass(frozen=True)
class StudySpec:
    """A validated study file."""

    name: str
    """The study's name (Optuna study and MLflow experiment are named after it)."""
    description: str
    """What it asks, in a sentence or two."""
    source: str
    """The file it came from."""
    space: tuple[Param, ...]
    """The swept keys."""
    fixed: dict[str, Any]
    """Run-config overrides shared by every trial."""
    seeds: tuple[int, ...]
    """Seeds per configuration."""
    sampler: str
    """A key of SAMPLER_NOTES (sweeps/study/pruners.py)."""
    sampler_seed: int
    """The seed every sampler is seeded from."""
    metric: str
    """The objective: a quality metric of the last evaluation."""
    direction: str
    """minimize or maximize."""
    profiles: dict[str, Profile]
    """quick and/or full budgets."""
    claims: tuple[str, ...] = ()
    """The seed's claims this study tests (ids in sweeps/study/claims.py), for the report's verdicts."""
    baseline: dict[str, Any] = field(default_factory=dict)
    """The seed's setting of the swept keys, for effect-vs-baseline tables."""
    configs: tuple[dict[str, Any], ...] | None = None
    """An explicit list of configurations (instead of the product of the values axes)."""
    config_seeds: tuple[tuple[int, ...] | None, ...] | None = None
    """Per explicit configuration, its own seeds (None: the study's)."""
    pruner: PrunerSpec | None = None
    """The study's pruner (None: every run trains to its end or its sealed fate)."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    """The file as parsed (profiles may override its seeds, fixed and space)."""

    def for_profile(self, profile: str) -> tuple[StudySpec, Profile]:
        """The spec as the given profile sees it (overrides applied), and that profile."""
        if profile not in self.profiles:
            raise SpecError(f"{self.source}: no [profiles.{profile}] (has {', '.join(self.profiles)})")
        over = {k: v for k, v in self.raw["profiles"][profile].items() if k in ("seeds", "fixed", "space", "configs")}
        if not over:
            return self, self.profiles[profile]
        merged = self.raw | {"fixed": self.raw.get("fixed", {}) | over.get("fixed", {})}
        if "space" in over or "configs" in over:  # a profile's design replaces the file's
            merged = {k: v for k, v in merged.items() if k not in ("space", "configs")}
        merged |= {k: over[k] for k in ("seeds", "space", "configs") if k in over}
        return _build(self.source, merged, validate_overrides=False), self.profiles[profile]

    def grid(self) -> Iterator[dict[str, Any]]:
        """The grid's configurations in a fixed order (lazily: a grid can be large): the explicit
        list, else every combination."""
        if self.configs is not None:
            yield from (dict(c) for c in self.configs)
            return
        axes = [[(p.name, v) for v in p.values] for p in self.space]
        yield from (dict(combo) for combo in itertools.product(*axes))

    def balanced_grid(self) -> Iterator[dict[str, Any]]:
        """The grid in an order whose every prefix covers each level of each swept key as evenly as it
        can (`--trials 4` of a 3 x 2 study runs all three levels of the first key and both of the
        second): greedily, the next configuration is the one whose levels have run least so far.
        Quadratic in the grid's size, so grids beyond BALANCE_LIMIT keep the plain order."""
        if self.grid_size() > BALANCE_LIMIT:
            yield from self.grid()
            return
        points = list(self.grid())
        keys = [p.name for p in self.space]
        used: dict[tuple[str, str], int] = {}
        left = list(range(len(points)))
        while left:
            best = min(left, key=lambda i: (sum(used.get((k, repr(points[i][k])), 0) for k in keys), i))
            left.remove(best)
            for k in keys:
                used[(k, repr(points[best][k]))] = used.get((k, repr(points[best][k])), 0) + 1
            yield points[best]

    def grid_size(self) -> int:
        """How many configurations the grid has, without building it."""
        if self.configs is not None:
            return len(self.configs)
        return math.prod(len(p.values) for p in self.space)

    def seeds_for(self, params: dict[str, Any]) -> tuple[int, ...]:
        """The seeds a grid configuration runs with: its own (a subset of the study's), else the study's."""
        if self.config_seeds is not None and self.configs is not None:
            key = json.dumps(params, sort_keys=True, default=str)
            for c, own in zip(self.configs, self.config_seeds):
                if own is not None and json.dumps(c, sort_keys=True, default=str) == key:
                    return tuple(seed for seed in self.seeds if seed in own)
        return self.seeds

    def trial_count(self, profile: Profile) -> int:
        """Trials the study plans: grid configurations x their seeds, or sampled configurations x seeds."""
        if self.sampler != "grid":
            return (profile.trials or 0) * len(self.seeds)
        if self.config_seeds is not None and any(s is not None for s in self.config_seeds):
            return sum(len(self.seeds_for(c)) for c in self.grid())
        return self.grid_size() * len(self.seeds)

    def expand(self, params: dict[str, Any]) -> dict[str, Any]:
        """Swept params -> run-config overrides (ties applied)."""
        out = dict(params)
        for p in self.space:
            for other in p.tie:
                if p.name in params:
                    out[other] = params[p.name]
        return out

    def run_config(self, params: dict[str, Any], seed: int, profile: Profile, **extra: Any) -> RunConfig:
        """The run config of one trial."""
        budget = {k: getattr(profile, k) for k in BUDGET_KEYS if getattr(profile, k) is not None}
        return RunConfig.from_flat(self.fixed | budget | self.expand(params) | extra | {"seed": seed})

    def fingerprint(self, profile: Profile, extra: dict[str, Any] | None = None) -> str:
        """A hash of what makes trials comparable (space, fixed, budget, objective, `extra` such
        as the data set, and what the data set's name trains on). Seeds are left out on purpose: adding seeds
        extends a study."""
        from gan_core.config import DATA_LAYOUT

        what = {"space": [p.__dict__ for p in self.space], "fixed": self.fixed,
                "profile": profile.__dict__, "metric": self.metric, "direction": self.direction,
                "extra": extra or {}, "data_layout": DATA_LAYOUT}
        if self.pruner is not None:  # only then: the studies stored before pruners keep their fingerprints
            what["pruner"] = self.pruner.as_dict()
        blob = json.dumps(what, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def describe_space(self) -> list[str]:
        if self.configs is not None:
            own = self.config_seeds or (None,) * len(self.configs)
            return [f"config {i + 1}: " + ", ".join(f"{k} = {v}" for k, v in c.items())
                    + (f" (seeds {', '.join(map(str, self.seeds_for(c)))})" if seeds is not None else "")
                    for i, (c, seeds) in enumerate(zip(self.configs, own))]
        lines = []
        for p in self.space:
            what = (", ".join(map(str, p.values)) if p.kind == "values" else f"{p.kind} [{p.low:g}, {p.high:g}]")
            tie = f" (also sets {', '.join(p.tie)})" if p.tie else ""
            lines.append(f"{p.name}: {what}{tie}")
        return lines


# -- loading -------------------------------------------------------------------------------

def builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("studies").iterdir() if p.name.endswith(".toml"))


def load_spec(name_or_path: str) -> StudySpec:
    """A built-in study by name, or a study file by path."""
    path = Path(name_or_path)
    # A folder that happens to carry a built-in study's name (reports/, a run's folder) does not hide it.
    if path.suffix == ".toml" or path.is_file() or (path.exists() and name_or_path not in builtin_names()):
        if not path.is_file():
            raise SpecError(f"study file not found: {name_or_path}")
        if path.stat().st_size > MAX_STUDY_FILE:
            raise SpecError(f"{path}: {path.stat().st_size:,} bytes is not a study file (at most {MAX_STUDY_FILE:,})")
        try:
            text, source = path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError as exc:
            raise SpecError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise SpecError(f"cannot read study file {path}: {exc.strerror}") from None
    else:
        res = resources.files("studies") / f"{name_or_path}.toml"
        if not res.is_file():
            raise UserError(f"unknown study {name_or_path!r}; built-in studies: {', '.join(builtin_names())} "
                            f"(or give a path to a .toml file)")
        text, source = res.read_text(), f"{name_or_path} (built-in)"
    try:
        raw = tomllib.loads(text)
        return _build(source, raw)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib and the checks below recurse once per level of nesting
        raise SpecError(f"{source}: nested too deeply to be a study file") from None


_TOP_KEYS = {"name", "description", "claims", "seeds", "objective", "baseline", "sampler", "pruner", "space",
             "configs", "fixed", "profiles"}
_PROFILE_KEYS = {"epochs", "steps_per_epoch", "eval_every", "eval_samples", "trials", "seeds", "fixed", "space",
                 "configs"}


def _check_keys(source: str, where: str, table: Any, allowed: set[str]) -> dict:
    if not isinstance(table, dict):
        raise SpecError(f"{source}: {where} must be a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        prefix = f"{where}." if where else ""
        raise SpecError(f"{source}: unknown key {prefix}{unknown[0]} (allowed: {', '.join(sorted(allowed))})")
    return table


def _typed(source: str, key: str, value: Any, kind: type | tuple, what: str) -> Any:
    if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise SpecError(f"{source}: {key} must be {what}, got {value!r}")
    if not isinstance(value, kind):
        raise SpecError(f"{source}: {key} must be {what}, got {value!r}")
    return value


def _check_value(source: str, key: str, name: str, value: Any) -> Any:
    """A value must be valid for its run-config key (checked now, not at trial 17); returns its
    canonical flat form (e.g. 1 -> 1.0 for a float key, None -> 'off' for a clip)."""
    try:
        return RunConfig().replace(**{name: value}).to_flat()[name]
    except ConfigError as exc:
        raise SpecError(f"{source}: {key}: {exc}") from None


def _param(source: str, name: str, table: Any) -> Param:
    key = f"space.{name}"
    if name not in FLAT_KEYS:
        raise SpecError(f"{source}: {key}: unknown run-config key {name!r} (see gan-sweep train --help)")
    if name in NOT_SWEEPABLE:
        raise SpecError(f"{source}: {key}: {name} cannot be swept (seeds go in 'seeds')")
    table = _check_keys(source, key, table, {"values", "log_uniform", "uniform", "tie"})
    kinds = [k for k in ("values", "log_uniform", "uniform") if k in table]
    if len(kinds) != 1:
        raise SpecError(f"{source}: {key} needs exactly one of values, log_uniform, uniform")
    kind = kinds[0]
    tie = tuple(_typed(source, f"{key}.tie", table.get("tie", []), list, "a list of keys"))
    for other in tie:
        if other not in FLAT_KEYS or other in NOT_SWEEPABLE:
            raise SpecError(f"{source}: {key}.tie: unknown or unsweepable key {other!r}")
    if kind == "values":
        values = _typed(source, f"{key}.values", table["values"], list, "a list")
        if not values:
            raise SpecError(f"{source}: {key}.values is empty")
        canonical = []
        for v in values:
            _typed(source, f"{key}.values", v, (int, float, str, bool), "numbers, strings or booleans")
            for target in tie:
                _check_value(source, key, target, v)
            canonical.append(_check_value(source, key, name, v))
        if len(set(map(repr, canonical))) != len(canonical):
            raise SpecError(f"{source}: {key}.values has duplicates")
        return Param(name, kind, tuple(canonical), tie=tie)
    rng = _typed(source, f"{key}.{kind}", table[kind], list, "a [low, high] pair")
    if len(rng) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rng):
        raise SpecError(f"{source}: {key}.{kind} must be a [low, high] pair of numbers, got {rng!r}")
    low, high = float(rng[0]), float(rng[1])
    if not low < high:
        raise SpecError(f"{source}: {key}.{kind} is an empty range [{low:g}, {high:g}]")
    if kind == "log_uniform" and low <= 0:
        raise SpecError(f"{source}: {key}.log_uniform needs low > 0, got {low:g}")
    for v in (low, high):
        for target in (name, *tie):
            _check_value(source, key, target, v)
    return Param(name, kind, low=low, high=high, tie=tie)


def _build(source: str, raw: dict, validate_overrides: bool = True) -> StudySpec:
    _check_keys(source, "", raw, _TOP_KEYS)
    name = _typed(source, "name", raw.get("name"), str, "a string")
    if not NAME.fullmatch(name) or ".." in name:
        raise SpecError(f"{source}: name {name[:60]!r} is not allowed: use 1 to 100 letters, digits, '.', '-' or "
                        f"'_', starting with a letter or digit (it names a folder, a study and an experiment)")
    description = _typed(source, "description", raw.get("description", ""), str, "a string")
    if len(description) > MAX_DESCRIPTION:
        raise SpecError(f"{source}: description is {len(description):,} characters (at most {MAX_DESCRIPTION:,}: "
                        f"it becomes the MLflow experiment's note)")
    raw_claims = raw.get("claims", [])
    if not isinstance(raw_claims, list) or any(isinstance(x, bool) or not isinstance(x, (int, str)) for x in raw_claims):
        raise SpecError(f"{source}: claims must be a list of claim ids (1 to 5, adaptive, headline), got {raw_claims!r}")
    try:
        claims = claim_ids(raw_claims)
    except ValueError as exc:
        raise SpecError(f"{source}: claims: {exc}") from None
    seeds = _seeds(source, "seeds", raw.get("seeds", [0]))

    objective = _check_keys(source, "objective", raw.get("objective", {}), {"metric", "direction"})
    metric = objective.get("metric", "fld")
    if metric not in METRICS:
        raise SpecError(f"{source}: objective.metric must be one of {', '.join(METRICS)}, got {metric!r}")
    direction = objective.get("direction", "minimize")
    if direction not in ("minimize", "maximize"):
        raise SpecError(f"{source}: objective.direction must be minimize or maximize, got {direction!r}")

    sampler = _check_keys(source, "sampler", raw.get("sampler", {}), {"kind", "seed"})
    kind = sampler.get("kind", "grid")
    if kind not in SAMPLERS:
        raise SpecError(f"{source}: sampler.kind must be one of {', '.join(SAMPLERS)}, got {kind!r}")
    sampler_seed = _typed(source, "sampler.seed", sampler.get("seed", 0), int, "an integer")
    if not 0 <= sampler_seed <= MAX_SAMPLER_SEED:
        raise SpecError(f"{source}: sampler.seed must be from 0 to 2^32 - 1, got {sampler_seed}")

    fixed = raw.get("fixed", {})
    if not isinstance(fixed, dict):
        raise SpecError(f"{source}: fixed must be a table")
    for k in fixed:
        if k not in FLAT_KEYS:
            raise SpecError(f"{source}: fixed.{k}: unknown run-config key {k!r} (see gan-sweep train --help)")
    configs = config_seeds = None
    if "configs" in raw:
        if "space" in raw:
            raise SpecError(f"{source}: give either [space] or configs, not both")
        if kind != "grid":
            raise SpecError(f"{source}: configs need the grid sampler")
        configs, config_seeds = _configs(source, raw["configs"], fixed)
        keys = list(dict.fromkeys(k for c in configs for k in c))
        space = tuple(Param(k, "values", tuple({repr(c[k]): c[k] for c in configs}.values())) for k in keys)
    else:
        space_raw = raw.get("space", {})
        if not isinstance(space_raw, dict):
            raise SpecError(f"{source}: space must be a table")
        space = tuple(_param(source, n, t) for n, t in space_raw.items())
    if not space:
        raise SpecError(f"{source}: [space] is empty: a study must sweep at least one key")
    swept = [p.name for p in space] + [t for p in space for t in p.tie]
    dup = sorted({k for k in swept if swept.count(k) > 1})
    if dup:
        raise SpecError(f"{source}: space.{dup[0]} is swept twice (directly or through tie)")
    if kind == "grid" and any(p.kind != "values" for p in space):
        bad = next(p for p in space if p.kind != "values")
        raise SpecError(f"{source}: space.{bad.name}: a grid needs values, not a {bad.kind} range (use a sampler: tpe, random, gp, cmaes or qmc)")

    both = sorted(set(fixed) & set(swept))
    if both:
        raise SpecError(f"{source}: {both[0]} is both fixed and swept")
    for k, v in fixed.items():
        _check_value(source, f"fixed.{k}", k, v)

    baseline = _check_keys(source, "baseline", raw.get("baseline", {}), set(swept))
    for k, v in baseline.items():
        _check_value(source, f"baseline.{k}", k, v)

    profiles_raw = _check_keys(source, "profiles", raw.get("profiles", {}), set(PROFILES))
    if not profiles_raw:
        raise SpecError(f"{source}: needs at least one of [profiles.quick] or [profiles.full]")
    profiles = {}
    for pname, table in profiles_raw.items():
        table = _check_keys(source, f"profiles.{pname}", table, _PROFILE_KEYS)
        if "epochs" not in table:
            raise SpecError(f"{source}: profiles.{pname}.epochs is missing")
        budget = {}
        for k in ("epochs", "steps_per_epoch", "eval_every", "eval_samples", "trials"):
            if k in table:
                v = _typed(source, f"profiles.{pname}.{k}", table[k], int, "an integer")
                if v <= 0:
                    raise SpecError(f"{source}: profiles.{pname}.{k} must be > 0, got {v}")
                budget[k] = v
        if kind != "grid" and "trials" not in budget:
            raise SpecError(f"{source}: profiles.{pname}.trials is needed by the {kind} sampler")
        profiles[pname] = Profile(pname, **budget)
    if kind == "cmaes" and all(p.kind == "values" for p in space):
        raise SpecError(f"{source}: sampler.kind cmaes needs a log_uniform or uniform range in [space]: CMA-ES "
                        f"samples only those (values would all be drawn at random)")
    pruner = _pruner(source, raw, claims, profiles) if "pruner" in raw else None
    spec = StudySpec(name, description, source, space, dict(fixed), seeds, kind, sampler_seed, metric,
                     direction, profiles, claims, dict(baseline), configs, config_seeds, pruner, raw)
    if validate_overrides:  # a profile's overrides are checked now, not when that profile first runs
        for pname in profiles:
            spec.for_profile(pname)
    return spec


def _pruner(source: str, raw: dict, claims: tuple[str, ...], profiles: dict[str, Profile]) -> PrunerSpec:
    if claims:  # a verdict on a claim counts every run to its end (or its sealed fate)
        raise SpecError(f"{source}: pruner: a study of the seed's claims (here {', '.join(claims)}) keeps none: a "
                        f"verdict needs every run to its end")
    try:
        pruner = parse_pruner("pruner", raw["pruner"])
    except ValueError as exc:
        raise SpecError(f"{source}: {exc}") from None
    for pname, prof in profiles.items():
        check_pruner_budget(source, pruner, prof.epochs, f"profiles.{pname}'s {prof.epochs} epochs")
    return pruner


def check_pruner_budget(source: str, pruner: PrunerSpec, epochs: int, budget: str) -> None:
    """A pruner that could first act after the last epoch would never act: refused, not run for nothing."""
    first = pruner.first_epoch(epochs)
    if first > epochs:
        raise SpecError(f"{source}: pruner: it could first prune at epoch {first}, after {budget} (lower its "
                        f"min_resource, warmup or patience)")


def _configs(source: str, configs: Any, fixed: dict
             ) -> tuple[tuple[dict[str, Any], ...], tuple[tuple[int, ...] | None, ...]]:
    """An explicit list of configurations (keys a config leaves out take the fixed/default value), and
    each one's own seeds (None: the study's)."""
    if not isinstance(configs, list) or not configs or not all(isinstance(c, dict) for c in configs):
        raise SpecError(f"{source}: configs must be a non-empty list of tables")
    try:
        base = RunConfig.from_flat(fixed).to_flat()
    except ConfigError as exc:
        raise SpecError(f"{source}: fixed: {exc}") from None
    own = []
    for i, c in enumerate(configs):
        if "seeds" in c:
            own.append(_seeds(source, f"configs[{i}].seeds", c["seeds"]))  # those among the study's run
        else:
            own.append(None)
    configs = [{k: v for k, v in c.items() if k != "seeds"} for c in configs]
    keys = list(dict.fromkeys(k for c in configs for k in c))
    for k in keys:
        if k not in FLAT_KEYS or k in NOT_SWEEPABLE:
            raise SpecError(f"{source}: configs: unknown or unsweepable key {k!r}")
    out = []
    for i, c in enumerate(configs):
        out.append({k: _check_value(source, f"configs[{i}].{k}", k, c[k]) if k in c else base[k] for k in keys})
    seen = [json.dumps(c, sort_keys=True, default=str) for c in out]
    if len(set(seen)) != len(seen):
        raise SpecError(f"{source}: configs has duplicates (after filling in the fixed/default values)")
    return tuple(out), tuple(own)


def _seeds(source: str, key: str, seeds: Any) -> tuple[int, ...]:
    if (not isinstance(seeds, list) or not seeds or
            not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in seeds)):
        raise SpecError(f"{source}: {key} must be a non-empty list of integers from 0 to 2^63 - 1, got "
                        f"{str(seeds)[:80]}")
    if len(set(seeds)) != len(seeds):
        raise SpecError(f"{source}: {key} has duplicates")
    return tuple(seeds)
