"""The configuration of one run: frozen dataclasses whose defaults are the seed's choices.

Each section is its own dataclass; `RunConfig.to_flat()` gives the flat `key -> value` view
that studies sweep, MLflow records as params and reports use as columns, and
`RunConfig.from_flat()` is its inverse (with type coercion, so CLI and TOML strings work).
Flat keys are the field names, unique across sections.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

# The choices of each choice field, declared once as its type: the CLI lists and completes them,
# validation checks them, and `typing.get_args` gives the tuples below.
ClampMode = Literal["none", "clamp", "logits"]
FreezeMode = Literal["requires_grad", "eval_only"]
ZeroGradMode = Literal["both_before_backward", "own_after_step"]
Schedule = Literal["adaptive", "fixed"]
GLoss = Literal["saturating", "non_saturating"]
Optimiser = Literal["adam", "sgd"]
GOutput = Literal["sigmoid", "tanh", "none"]
DOutput = Literal["sigmoid", "raw"]
RestKCountdown = Literal["untrained_batches", "every_batch"]
TmpLoss = Literal["batch", "epoch_mean", "previous_epoch"]
RestKEpoch = Literal["carry", "reset"]
LastBatch = Literal["drop", "keep"]
DType = Literal["float32", "float64"]
Precision = Literal["fp32", "bf16", "tf32"]
CLAMP_MODES = typing.get_args(ClampMode)
FREEZE_MODES = typing.get_args(FreezeMode)
ZERO_GRAD_MODES = typing.get_args(ZeroGradMode)
SCHEDULES = typing.get_args(Schedule)
G_LOSSES = typing.get_args(GLoss)
OPTIMISERS = typing.get_args(Optimiser)
G_OUTPUTS = typing.get_args(GOutput)
D_OUTPUTS = typing.get_args(DOutput)
REST_K_COUNTDOWNS = typing.get_args(RestKCountdown)
TMP_LOSSES = typing.get_args(TmpLoss)
REST_K_EPOCHS = typing.get_args(RestKEpoch)
LAST_BATCHES = typing.get_args(LastBatch)
DTYPES = typing.get_args(DType)
PRECISIONS = typing.get_args(Precision)
OFF = "off"
_OFF_TYPES = (float | None, int | None)
"""Optional numbers whose None is written 'off' in the flat view (a clip, the inner loop's cap)."""


DATA_LAYOUT = 2
"""Bumped when what a data set's name trains the GAN on changes (2: the judge's reference, a fifth of the
bundled split, is held out from the GAN): a study or checkpoint made under another layout is not resumed."""

TMP_LOSS_START = 0.0
"""What `tmp_loss = previous_epoch` reads in the first epoch, before any epoch has a mean: 0, as a caller
that starts its running loss at 0 would pass it (the rule then lets G train from the first batch)."""

POPULATION_SHARED = "shared"
"""A field every member of one population shares (its structure: shapes, data, device, batch counter)."""
POPULATION_MEMBER = "member"
"""A field each member of a population sets for itself."""


def SHARED(default: Any) -> Any:  # noqa: N802 - reads as a declaration: `z_dim: int = SHARED(100)`
    """A field's default, declared shared by a population."""
    return field(default=default, metadata={"population": POPULATION_SHARED})


def MEMBER(default: Any) -> Any:  # noqa: N802
    """A field's default, declared per member of a population."""
    return field(default=default, metadata={"population": POPULATION_MEMBER})


class ConfigError(ValueError):
    """A configuration value is invalid; the message is one line naming the key."""


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")


def _positive(key: str, value: float) -> None:
    # `not value > 0` also rejects NaN.
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise ConfigError(f"{key} must be > 0, got {value!r}")


MAX_WIDTH = 65_536
"""Largest latent size or layer width: beyond it one weight matrix no longer fits in memory."""
MAX_LR = 1e6
"""Largest learning rate: beyond it float32 updates overflow at once (a typo, not an experiment)."""
KNN_K = 3
"""k of the k-NN manifolds that precision and recall measure (Kynkäänniemi et al. use 3)."""
MIN_EVAL_SAMPLES = KNN_K + 1
"""Fewest samples per evaluation: a k-NN ball needs k other samples."""
MAX_EVAL_SAMPLES = 20_000
"""Most samples per evaluation: their k-NN radii take O(n^2) time (20,000 take about 40 times as long as the
default 2,000), while memory stays flat (`metrics.KNN_BLOCK_BYTES`). FID's usual sets hold 10,000 to 50,000."""
MAX_EPOCHS = 100_000
"""Largest number of epochs: a run keeps every epoch's record (about 1.7 kB each, 4 kB while a checkpoint
is written), so 100,000 epochs hold under half a GB; the seed's budget is 120."""
MAX_SEED = 2**63 - 1
"""Seeds are int64 on the device."""
MAX_R1_GAMMA = 1e6
"""Largest R1 weight (the literature uses 0.1 to 100)."""
MAX_G_LOOP = 1_000_000
"""Largest inner-loop cap or hang bound: a million G steps on one batch is already a hung run."""
MAX_INSTANCE_NOISE = 10.0
"""Largest instance-noise std: beyond it D sees only noise from the first step."""


def _at_most(key: str, value: float, limit: float, why: str = "") -> None:
    if value > limit:
        raise ConfigError(f"{key} must be at most {limit:g}{f' ({why})' if why else ''}, got {value!r}")


def _in_unit(key: str, value: float, *, closed_low: bool = True) -> None:
    ok = (0 <= value < 1) if closed_low else (0 < value < 1)
    if not ok:
        raise ConfigError(f"{key} must be in {'[' if closed_low else '('}0, 1), got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the seed's MLPs (the seed gives the layer counts, not the widths)."""

    z_dim: int = SHARED(100)
    """Size of G's latent input z."""
    g_hidden: tuple[int, ...] = SHARED((256, 512))
    """Widths of G's two hidden layers (G: 3 linear layers, 2 ReLU)."""
    d_hidden: int = SHARED(256)
    """Width of D's hidden layer (D: 2 linear layers, 1 LeakyReLU)."""
    leaky_slope: float = SHARED(0.2)
    """Negative slope of D's LeakyReLU."""
    g_output: GOutput = MEMBER("sigmoid")
    """G's output activation: sigmoid (pixels in [0, 1]), tanh (pixels in [-1, 1]) or none (the last linear layer's output, scored clipped to [0, 1])."""
    d_output: DOutput = MEMBER("sigmoid")
    """What the seed's clamp receives: sigmoid of D's last layer (a probability), or its raw output (then the clamp's bounds 0 and 1 act)."""

    def __post_init__(self) -> None:
        _positive("z_dim", self.z_dim)
        _positive("d_hidden", self.d_hidden)
        if len(self.g_hidden) != 2 or any(not (isinstance(w, int) and w > 0) for w in self.g_hidden):
            raise ConfigError(f"g_hidden must be two positive widths like 256,512; got {self.g_hidden!r}")
        for key, value in (("z_dim", self.z_dim), ("d_hidden", self.d_hidden), ("g_hidden", max(self.g_hidden))):
            _at_most(key, value, MAX_WIDTH, "a weight matrix that large does not fit in memory")
        if not 0 <= self.leaky_slope < 1:
            raise ConfigError(f"leaky_slope must be in [0, 1), got {self.leaky_slope!r}")
        _choice("g_output", self.g_output, G_OUTPUTS)
        _choice("d_output", self.d_output, D_OUTPUTS)


@dataclass(frozen=True)
class OptimConfig:
    """The optimisers; the seed names only lr = 1e-4, Adam is our reading."""

    optimiser: Optimiser = SHARED("adam")
    """adam or sgd, the same kind for D and G."""
    lr_d: float = MEMBER(1e-4)
    """D's learning rate (the seed's pitfall 4)."""
    lr_g: float = MEMBER(1e-4)
    """G's learning rate (the seed's pitfall 4)."""
    beta1: float = MEMBER(0.9)
    """Adam's first-moment decay."""
    beta2: float = MEMBER(0.999)
    """Adam's second-moment decay."""
    momentum: float = MEMBER(0.0)
    """SGD's momentum (unused by Adam)."""
    adam_eps: float = MEMBER(1e-8)
    """Adam's denominator epsilon."""

    def __post_init__(self) -> None:
        _choice("optimiser", self.optimiser, OPTIMISERS)
        for key in ("lr_d", "lr_g"):
            _positive(key, getattr(self, key))
            _at_most(key, getattr(self, key), MAX_LR)
        _in_unit("beta1", self.beta1)
        _in_unit("beta2", self.beta2)
        _in_unit("momentum", self.momentum)
        _positive("adam_eps", self.adam_eps)


@dataclass(frozen=True)
class PitfallConfig:
    """One toggle per loss-side pitfall the seed documents."""

    clamp: ClampMode = MEMBER("clamp")
    """none (raw log: log(0) is possible), clamp (the seed's torch.clamp), logits (stable BCE)."""
    clamp_eps: float = MEMBER(1e-3)
    """The clamp's bound: D(x) in [eps, 1] on real data, D(G(z)) in [0, 1 - eps] on fakes."""
    clip_d: float | None = MEMBER(1.0)
    """Max global L2 norm of D's gradient, or None (off) for no clipping."""
    clip_g: float | None = MEMBER(1.0)
    """Max global L2 norm of G's gradient, or None (off) for no clipping."""
    freeze: FreezeMode = MEMBER("requires_grad")
    """How the other net is frozen: requires_grad_(False), or only eval() (still gets grads)."""
    zero_grad: ZeroGradMode = MEMBER("both_before_backward")
    """both_before_backward (the seed's cure) or own_after_step (each net clears only its own)."""
    g_loss: GLoss = MEMBER("saturating")
    """saturating (minimise log(1 - D(G(z))), the seed's) or non_saturating (-log D(G(z)))."""

    def __post_init__(self) -> None:
        _choice("clamp", self.clamp, CLAMP_MODES)
        _in_unit("clamp_eps", self.clamp_eps, closed_low=False)
        for key in ("clip_d", "clip_g"):
            value = getattr(self, key)
            if value is not None:
                _positive(key, value)
        _choice("freeze", self.freeze, FREEZE_MODES)
        _choice("zero_grad", self.zero_grad, ZERO_GRAD_MODES)
        _choice("g_loss", self.g_loss, G_LOSSES)


@dataclass(frozen=True)
class ScheduleConfig:
    """When G trains: the seed's adaptive rule, or a fixed k D batches per G step."""

    schedule: Schedule = MEMBER("adaptive")
    """adaptive (the seed's tmp_loss / rest_K rule with its inner G loop) or fixed."""
    d_steps: int = MEMBER(1)
    """fixed schedule: G takes one step every d_steps batches (D trains on every batch)."""
    g_loop_cap: int | None = MEMBER(20)
    """adaptive: most G steps per batch, or off (the seed's loop: no cap; the hang detector watches it)."""
    g_loop_bound: int = MEMBER(1000)
    """adaptive, uncapped: an inner G loop still running after this many steps is taken to never return (run labelled hung)."""
    rest_k_countdown: RestKCountdown = MEMBER("untrained_batches")
    """adaptive: rest_K goes down by one on each batch where G did not train, or on every batch (the seed elides it)."""
    tmp_loss: TmpLoss = MEMBER("batch")
    """adaptive: the D loss the rule compares with 1.75: this batch's (real + fake), the epoch's running mean so far, or the previous epoch's mean (the current_loss the seed's train_epoch receives; TMP_LOSS_START in the first epoch)."""
    rest_k_epoch: RestKEpoch = MEMBER("carry")
    """adaptive: rest_K carried over from one epoch to the next, or reset to 0 at each epoch's start (the seed assigns it inside train_epoch, which makes it a local)."""
    d_loss_threshold: float = MEMBER(1.75)
    """adaptive: G may train only while D's batch loss is below this (log 4 = 1.386 at equilibrium)."""
    g_loss_threshold: float = MEMBER(0.1)
    """adaptive: G keeps training on a batch while |log(1 - D(G(z)))| is below this."""
    rest_k_scale: float = MEMBER(6.0)
    """adaptive: after G trains, rest_K = int(1 + |l| * scale) D-only batches follow."""

    def __post_init__(self) -> None:
        _choice("schedule", self.schedule, SCHEDULES)
        _positive("d_steps", self.d_steps)
        if self.g_loop_cap is not None:
            _positive("g_loop_cap", self.g_loop_cap)
            _at_most("g_loop_cap", self.g_loop_cap, MAX_G_LOOP, "use off for the seed's uncapped loop")
        _positive("g_loop_bound", self.g_loop_bound)
        _at_most("g_loop_bound", self.g_loop_bound, MAX_G_LOOP)
        _choice("rest_k_countdown", self.rest_k_countdown, REST_K_COUNTDOWNS)
        _choice("tmp_loss", self.tmp_loss, TMP_LOSSES)
        _choice("rest_k_epoch", self.rest_k_epoch, REST_K_EPOCHS)
        _positive("d_loss_threshold", self.d_loss_threshold)
        _positive("g_loss_threshold", self.g_loss_threshold)
        if not (self.rest_k_scale >= 0 and math.isfinite(self.rest_k_scale)):
            raise ConfigError(f"rest_k_scale must be >= 0, got {self.rest_k_scale!r}")


@dataclass(frozen=True)
class CureConfig:
    """The field's cures for the seed's failures, each off by default (the seed uses none of them)."""

    spectral_norm: bool = MEMBER(False)
    """Divide each of D's weights by its largest singular value (Miyato et al. 2018; one power iteration per D update)."""
    r1_gamma: float = MEMBER(0.0)
    """R1 penalty gamma / 2 * E|grad_x D(x)|^2 on real data, added to D's loss (Mescheder et al. 2018); 0 is off."""
    label_smoothing: float = MEMBER(0.0)
    """One-sided label smoothing: D's target on real data is 1 - this (Salimans et al. 2016); 0 is off."""
    instance_noise: float = MEMBER(0.0)
    """Std of Gaussian noise added to D's inputs, annealed linearly to 0 over the epochs (Sønderby et al. 2016)."""
    g_ema: float = MEMBER(0.0)
    """Decay of an average of G's weights that the evaluator scores instead of G (Yazıcı et al. 2019); 0 is off."""

    def __post_init__(self) -> None:
        if not isinstance(self.spectral_norm, bool):
            raise ConfigError(f"spectral_norm must be true or false, got {self.spectral_norm!r}")
        for key in ("r1_gamma", "instance_noise"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{key} must be >= 0 (0 is off), got {value!r}")
        _at_most("r1_gamma", self.r1_gamma, MAX_R1_GAMMA)
        _at_most("instance_noise", self.instance_noise, MAX_INSTANCE_NOISE, "pixels span at most 2")
        if not 0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"label_smoothing must be in [0, 0.5) (0 is off), got {self.label_smoothing!r}")
        _in_unit("g_ema", self.g_ema)


@dataclass(frozen=True)
class DataConfig:
    """Which data set, where from, and the batch size."""

    dataset: str = SHARED("mnist")
    """mnist, mnist-10k (the bundled test split), fashion-mnist, or idx (with data_dir)."""
    data_dir: str | None = SHARED(None)
    """A folder of IDX files (…-images-idx3-ubyte[.gz], …-labels-idx1-ubyte[.gz]) to use instead."""
    batch_size: int = SHARED(64)
    """Images per batch (the seed does not give it)."""
    last_batch: LastBatch = SHARED("drop")
    """An epoch's last, smaller batch (the images left over after the full batches): dropped, or kept (the seed's batch_size = X.shape[0] serves it)."""

    def __post_init__(self) -> None:
        if not self.dataset:
            raise ConfigError("dataset must not be empty")
        _positive("batch_size", self.batch_size)
        _at_most("batch_size", self.batch_size, MAX_WIDTH)
        _choice("last_batch", self.last_batch, LAST_BATCHES)


@dataclass(frozen=True)
class BudgetConfig:
    """How long a run trains and how often it is evaluated."""

    epochs: int = MEMBER(120)
    """Passes over the data (the seed's budget is 120)."""
    steps_per_epoch: int | None = SHARED(None)
    """Cap on batches per epoch (None: the whole data set); for quick tests and profiles."""
    eval_every: int = MEMBER(1)
    """Evaluate sample quality every this many epochs (and always after the last)."""
    eval_samples: int = MEMBER(2000)
    """Generated samples per quality evaluation."""
    stop_early: bool = MEMBER(True)
    """Stop as soon as the outcome is sealed (diverged, d_overpowered, stalled; hung always stops)."""

    def __post_init__(self) -> None:
        _positive("epochs", self.epochs)
        _at_most("epochs", self.epochs, MAX_EPOCHS)
        if self.steps_per_epoch is not None:
            _positive("steps_per_epoch", self.steps_per_epoch)
        _positive("eval_every", self.eval_every)
        if not (isinstance(self.eval_samples, int) and self.eval_samples >= MIN_EVAL_SAMPLES):
            raise ConfigError(f"eval_samples must be a whole number of at least {MIN_EVAL_SAMPLES} (a k-NN ball "
                              f"needs {KNN_K} other samples), got {self.eval_samples!r}")
        _at_most("eval_samples", self.eval_samples, MAX_EVAL_SAMPLES)


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run; equal configs give equal runs on one device."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """Network sizes."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser and learning rates."""
    pitfalls: PitfallConfig = field(default_factory=PitfallConfig)
    """Loss-side pitfall toggles."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """When G trains."""
    cures: CureConfig = field(default_factory=CureConfig)
    """The field's cures (all off: the seed's own GAN)."""
    data: DataConfig = field(default_factory=DataConfig)
    """The data set."""
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    """Training length and evaluation cadence."""
    seed: int = MEMBER(0)
    """Seeds weights, batch order and noise."""
    device: str = SHARED("auto")
    """cpu, cuda, cuda:N, or auto (cuda when there is one)."""
    dtype: DType = SHARED("float32")
    """float32, or float64 (for equivalence tests)."""
    precision: Precision = SHARED("fp32")
    """Matmul precision: fp32, bf16 (bfloat16 autocast; float32 weights and losses) or tf32 (CUDA)."""

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be an integer from 0 to 2^63 - 1, got {self.seed!r}")
        _choice("dtype", self.dtype, DTYPES)
        _choice("precision", self.precision, PRECISIONS)
        if self.model.d_output == "raw" and self.pitfalls.clamp == "logits":
            raise ConfigError("d_output raw needs clamp clamp or none (logits is BCE on a sigmoid's input)")
        if not (self.device in ("auto", "cpu", "cuda") or (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N; got {self.device!r}")

    def to_flat(self) -> dict[str, Any]:
        """The flat view: every leaf field by its name; tuples as 'a,b', a disabled clip as 'off'."""
        flat: dict[str, Any] = {}
        for name, section in _SECTIONS.items():
            for f in dataclasses.fields(section):
                value = getattr(getattr(self, name), f.name)
                flat[f.name] = OFF if value is None and _FIELD_TYPES[f.name] in _OFF_TYPES else _to_flat_value(value)
        for name in _TOP_LEVEL:
            flat[name] = getattr(self, name)
        return flat

    @classmethod
    def from_flat(cls, flat: dict[str, Any], base: RunConfig | None = None) -> RunConfig:
        """The inverse of `to_flat`, applied over `base` (default: our default reading of the seed)."""
        base = base or cls()
        updates: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
        top: dict[str, Any] = {}
        for key, raw in flat.items():
            if key in _TOP_LEVEL:
                top[key] = _coerce(key, raw, _FIELD_TYPES[key])
            elif key in _KEY_SECTION:
                updates[_KEY_SECTION[key]][key] = _coerce(key, raw, _FIELD_TYPES[key])
            else:
                raise ConfigError(f"unknown key {key!r}; known keys: {', '.join(sorted(FLAT_KEYS))}")
        sections = {
            name: dataclasses.replace(getattr(base, name), **vals) if vals else getattr(base, name)
            for name, vals in updates.items()
        }
        return dataclasses.replace(base, **sections, **top)

    def replace(self, **flat: Any) -> RunConfig:
        """A copy with some flat keys changed (validated and coerced like `from_flat`)."""
        return RunConfig.from_flat(flat, base=self)


def steps_per_epoch(cfg: RunConfig, images: int) -> int:
    """Batches in one epoch of `images` training images: the full ones, and a last smaller one where the
    `last_batch` reading keeps it; at most the budget's `steps_per_epoch`."""
    full, left = divmod(images, cfg.data.batch_size)
    n = full + (1 if left and cfg.data.last_batch == "keep" else 0)
    cap = cfg.budget.steps_per_epoch
    return min(n, cap) if cap else n


_SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "optim": OptimConfig,
    "pitfalls": PitfallConfig,
    "schedule": ScheduleConfig,
    "cures": CureConfig,
    "data": DataConfig,
    "budget": BudgetConfig,
}
_TOP_LEVEL = ("seed", "device", "dtype", "precision")
_KEY_SECTION = {f.name: name for name, cls in _SECTIONS.items() for f in dataclasses.fields(cls)}
_FIELD_TYPES: dict[str, Any] = {
    key: typing.get_type_hints(cls)[key] for name, cls in _SECTIONS.items() for key in
    (f.name for f in dataclasses.fields(cls))
}
_FIELD_TYPES.update({k: typing.get_type_hints(RunConfig)[k] for k in _TOP_LEVEL})
FLAT_KEYS: frozenset[str] = frozenset(_FIELD_TYPES)
POPULATION_CLASS: dict[str, str | None] = {
    f.name: f.metadata.get("population") for cls in (*_SECTIONS.values(), RunConfig) for f in dataclasses.fields(cls)
    if f.name in FLAT_KEYS and (cls is not RunConfig or f.name in _TOP_LEVEL)}
"""Flat key -> how the population engine treats it (declared with the field; None: undeclared)."""
def field_type(key: str) -> Any:
    """The declared type of a flat key (e.g. Literal['none', 'clamp', 'logits'], float, float | None)."""
    return _FIELD_TYPES[key]


FIELD_DOCS: dict[str, str] = {}
"""One line per flat key, for `gan-sweep train --help` and `gan-sweep show`."""


def _to_flat_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return value


def _coerce(key: str, raw: Any, hint: Any) -> Any:
    """Turn a CLI/TOML/Optuna value into the field's type, or raise a one-line ConfigError."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in (OFF, "none", "")):
            return None
        hint = next(a for a in args if a is not type(None))
    try:
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in ("true", "yes", "1", "on", "false", "no", "0"):
                return raw.lower() in ("true", "yes", "1", "on")
            raise ValueError
        if hint is int:
            if isinstance(raw, bool):
                raise ValueError
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            return int(raw)
        if hint is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if hint is str or typing.get_origin(hint) is Literal:
            if not isinstance(raw, str):
                raise ValueError
            return raw  # a Literal's choices are checked by the field's own validation
        if typing.get_origin(hint) is tuple:
            items = raw.replace("x", ",").split(",") if isinstance(raw, str) else list(raw)
            return tuple(int(v) for v in items)
    except (TypeError, ValueError):
        pass
    else:
        raise AssertionError(f"no coercion for {key}: {hint}")
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, "one of " + ", ".join(typing.get_args(hint)) if typing.get_origin(hint) is Literal else "a list of integers")
    if optional:
        expected += " or 'off'"
    raise ConfigError(f"{key} must be {expected}, got {raw!r}")


def _field_docs() -> dict[str, str]:
    """Field docstrings, read from this module's source (they are plain string statements)."""
    import ast
    import inspect

    docs: dict[str, str] = {}
    for cls in (*_SECTIONS.values(), RunConfig):
        body = ast.parse(inspect.getsource(cls)).body[0].body
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = str(nxt.value.value)
    return {k: v for k, v in docs.items() if k in FLAT_KEYS}


FIELD_DOCS.update(_field_docs())
