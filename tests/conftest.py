"""Shared fixtures and helpers: test modules import helpers from here (`from conftest import ...`), never
from one another. Everything runs on the CPU; the evaluator is the package's shipped MNIST one (caches of
anything else go under .pytest_cache)."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("GAN_SWEEP_CACHE", str(ROOT / ".pytest_cache" / "gan-sweep"))
os.environ.setdefault("GAN_SWEEP_OFFLINE", "1")  # tests never try the network


def _roomy_memory_folder(path: str = "/dev/shm", need: int = 2 << 30) -> bool:
    """Whether `path` is a writable folder with `need` bytes free (a container's /dev/shm can be 64 MB)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return os.access(path, os.W_OK) and st.f_bavail * st.f_frsize >= need


if "PYTEST_DEBUG_TEMPROOT" not in os.environ and _roomy_memory_folder():
    # Test folders in memory where the machine has room: each SQLite commit waits for the disk (half of
    # Optuna's time per trial on this project's 2-core machine), and no test is about the disk (a full
    # disk is made with RLIMIT_FSIZE, which tmpfs honours as well). A whole run writes about 65 MB there.
    os.environ["PYTEST_DEBUG_TEMPROOT"] = "/dev/shm"
if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one thread each, subprocesses too
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def mnist():
    from gan_core.data import load_dataset

    return load_dataset("mnist-10k")


@pytest.fixture(scope="session")
def evaluator(mnist):
    from gan_core.judge.evaluator import Evaluator

    return Evaluator(mnist)


@pytest.fixture
def tiny_config():
    """Our default reading of the seed, cut to a few batches so a run takes well under a second."""
    from gan_core.config import RunConfig

    return RunConfig().replace(dataset="mnist-10k", device="cpu", epochs=2, steps_per_epoch=8,
                               eval_samples=200)


def assert_one_line_error(stderr: str, code: int, message: str) -> None:
    """A user error: exit code 2 and exactly one line, `error: ...`, containing `message`."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], stderr


def main_cli(args, capsys) -> tuple[int, str, str]:
    """Run the installed command's entry point in-process: (exit code, stdout, stderr). Unlike typer's
    test runner on the app, usage errors (a bad choice, an unknown flag) come out as the user sees them."""
    from sweeps.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def finish_here(capsys, *args) -> str:
    """A gan-sweep command that must succeed, run in this process: a rerun after a fault, or the run that
    creates a study for workers, gains nothing from a process of its own, whose start costs seconds of
    CPU (torch, MLflow). Its stdout and stderr together."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the process it replaces ran (OMP_NUM_THREADS=1): the same float sums
    try:
        code, out, err = main_cli(list(args), capsys)
    finally:
        torch.set_num_threads(threads)
    assert code == 0, (out + err)[-3000:]
    return out + err


def ended(proc: subprocess.Popen, timeout: float) -> str:
    """`proc.communicate(timeout)[0]`, but a process still running then is a hang, and a hang should say
    where: it is sent SIGABRT, which makes one started with PYTHONFAULTHANDLER=1 (`gan_sweep` below)
    print every thread's stack, and the test fails with them."""
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        out = proc.communicate(timeout=60)[0]
        pytest.fail(f"still running after {timeout} s; its threads when stopped:\n{(out or '')[-8000:]}")


# -- commands on a study file, in this process or as processes of their own -------------------------------

def cli(*args):
    """A gan-sweep command through typer's test runner on the app (`.exit_code`, `.stdout`, `.stderr`)."""
    from typer.testing import CliRunner

    from sweeps.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def stores(folder: Path) -> tuple[str, str]:
    """(Optuna storage URL, MLflow tracking URI) of the two SQLite stores `o.db` and `m.db` in `folder`."""
    return f"sqlite:///{folder / 'o.db'}", f"sqlite:///{folder / 'm.db'}"


def study_file(tmp_path: Path, lrs: int, seeds: int, epochs: int = 1, steps: int = 2) -> Path:
    """`scale.toml`: a grid study "scale" of `lrs` learning rates times `seeds` seeds on mnist-10k."""
    values = ", ".join(f"{1e-4 * (1 + i)}" for i in range(lrs))
    path = tmp_path / "scale.toml"
    path.write_text(f"""
name = "scale"
seeds = [{", ".join(str(s) for s in range(seeds))}]
[sampler]
kind = "grid"
[space]
lr_d = {{ values = [{values}] }}
[fixed]
dataset = "mnist-10k"
[profiles.quick]
epochs = {epochs}
steps_per_epoch = {steps}
eval_samples = 64
""")
    return path


def gan_sweep(*args, fresh: bool = False, **kwargs) -> subprocess.Popen:
    """`python -m sweeps <args>` as its own process, output piped (forked warm unless `fresh`: tests/forked.py)."""
    import forked

    env = os.environ | {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    return forked.spawn("-m", "sweeps", *args, fresh=fresh, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        text=True, **kwargs)


def watch_study(storage: str, name: str):
    """The study `name` (an `optuna.Study`) as a run that is making it has it so far; None until the run has
    made its store and the study. Never creates a file or a table itself: a watcher that did would race the
    run's own schema creation (`table ... already exists`)."""
    import optuna
    import sqlalchemy

    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).exists():
        return None  # connecting would create the file under the run that is about to
    try:
        # Optuna's storage writes its version rows into a store that lacks them (even with
        # skip_table_creation), which races the run's own (UNIQUE constraint failed: alembic_version):
        # open it only once the run has written them and the study, read here without writing.
        engine = sqlalchemy.create_engine(storage)
        try:
            with engine.connect() as con:
                ready = (con.execute(sqlalchemy.text("SELECT count(*) FROM alembic_version")).scalar()
                         and con.execute(sqlalchemy.text("SELECT count(*) FROM version_info")).scalar()
                         and con.execute(sqlalchemy.text("SELECT count(*) FROM studies WHERE study_name = :n"),
                                         {"n": name}).scalar())
        finally:
            engine.dispose()
        if not ready:
            return None
        store = optuna.storages.RDBStorage(storage, skip_table_creation=True, skip_compatibility_check=True)
        return optuna.load_study(study_name=name, storage=store)
    except (KeyError, sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError):
        return None  # no study yet, or its tables are still being made


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory, evaluator):
    """One finished study "scale-quick" (a folder with both stores, `stores(folder)`), shared by the tests
    that read one; none of them writes to its stores."""
    folder = tmp_path_factory.mktemp("finished")
    storage, tracking = stores(folder)
    res = cli("run", study_file(folder, lrs=1, seeds=1), "--device", "cpu", "--storage", storage,
              "--tracking-uri", tracking, "--out", folder / "reports", "--checkpoint-dir", folder / "ckpt")
    assert res.exit_code == 0, res.output
    return folder


# -- the servers .ci/run starts ---------------------------------------------------------------------------

PG = os.environ.get("GAN_SWEEP_TEST_PG")
MLFLOW = os.environ.get("GAN_SWEEP_TEST_MLFLOW")
_without_servers = pytest.mark.skipif(
    not (PG and MLFLOW),
    reason="needs the PostgreSQL and mlflow servers that .ci/run starts (source .ci/servers.sh start)")


def needs_servers(test):
    """Marked `servers` (`-m "not servers"` leaves them out) and skipped where the servers are not up."""
    return pytest.mark.servers(_without_servers(test))


# -- the population engine against the reference trainer (float64 on the CPU) ------------------------------

SMALL = dict(dataset="mnist-10k", device="cpu", dtype="float64", z_dim=16, g_hidden="32,64", d_hidden=32,
             epochs=2, steps_per_epoch=15, eval_samples=100, stop_early=False)


def _population_keys() -> tuple[str, ...]:
    from gan_core.toggles import TOGGLES

    return tuple(dict.fromkeys(("loss_d", "loss_g", "d_real", "d_fake") +
                               tuple(p for t in TOGGLES if t.kind == "pitfall" for p in t.probes)))


KEYS = _population_keys()
"""What every member must reproduce: the losses, and each pitfall toggle's own probes (gan_core/toggles.py)."""


def mixed_configs():
    """A population of every pitfall toggle, each member a different mix (the engines' equivalence tests)."""
    from gan_core.config import RunConfig

    base = RunConfig().replace(**SMALL)
    return [
        base.replace(seed=0),                                                    # the seed's adaptive rule
        base.replace(seed=1, lr_d=1e-3, lr_g=5e-4, clip_d="off"),
        base.replace(seed=2, clamp="logits", g_loss="non_saturating", schedule="fixed", d_steps=2),
        base.replace(seed=3, clamp="none", beta1=0.5, g_loop_cap=3, clip_g=0.1),
        base.replace(seed=4, lr_d=3e-3, lr_g=3e-3, g_loss="non_saturating", clamp_eps=1e-2),
        base.replace(seed=5, schedule="fixed", d_steps=3, beta2=0.99, lr_g=2e-3),
        base.replace(seed=6, freeze="eval_only"),                                # wasted gradients, no leak
        base.replace(seed=7, zero_grad="own_after_step"),                        # each clears its own: no leak
        base.replace(seed=8, freeze="eval_only", zero_grad="own_after_step", lr_g=1e-3),  # the leak
        base.replace(seed=9, freeze="eval_only", zero_grad="own_after_step", schedule="fixed", d_steps=3,
                     g_loss="non_saturating"),                                   # stale G gradient over 3 batches
        base.replace(seed=10, freeze="eval_only", zero_grad="own_after_step", schedule="fixed", d_steps=1,
                     g_loss="non_saturating"),                                   # ... and over 1: member 9's twin
    ]


def cure_configs():
    """A population of every cure, alone and together (the engines' equivalence tests)."""
    from gan_core.config import RunConfig

    base = RunConfig().replace(**(SMALL | dict(steps_per_epoch=12)))
    return [
        base.replace(seed=0),                                                    # no cure: the seed's GAN
        base.replace(seed=1, spectral_norm=True),
        base.replace(seed=2, r1_gamma=10.0, clamp="logits"),
        base.replace(seed=3, label_smoothing=0.1),
        base.replace(seed=4, instance_noise=0.5, schedule="fixed", d_steps=2),
        base.replace(seed=5, g_ema=0.99, g_loss="non_saturating"),
        base.replace(seed=6, spectral_norm=True, r1_gamma=1.0, label_smoothing=0.2, instance_noise=0.3, g_ema=0.9,
                     freeze="eval_only", zero_grad="own_after_step"),             # every cure, with the leak
        base.replace(seed=7, spectral_norm=True, instance_noise=0.2, g_ema=0.95, clamp="none", lr_d=3e-3),
    ]


def g_params(pop, p):
    return [w.detach()[p] for w in pop.G.params]


def ref_g_params(trainer):
    out = []
    for layer in (m for m in trainer.G.net if isinstance(m, torch.nn.Linear)):
        out += [layer.weight.detach().T, layer.bias.detach()]
    return out


_REFERENCE_RUNS: dict = {}
"""A configuration's reference run, trained once per test process: the oracle is deterministic (float64 on
the CPU), and both Adam implementations (and several tests) hold their populations to the same runs."""


def reference_run(cfg, mnist):
    """(the reference trainer's result, its G's parameters) for `cfg` on `mnist`, trained at most once."""
    from gan_core.trainer import Trainer

    key = (repr(cfg), id(mnist))
    if key not in _REFERENCE_RUNS:
        trainer = Trainer(cfg, mnist)
        result = trainer.run()
        _REFERENCE_RUNS[key] = (result, [t.clone() for t in ref_g_params(trainer)], mnist)  # mnist kept: its id stays its own
    result, params, _ = _REFERENCE_RUNS[key]
    return result, params


def assert_matches_reference(pop, results, configs, mnist):
    for p, cfg in enumerate(configs):
        ref, ref_params = reference_run(cfg, mnist)
        assert len(ref.history) == len(results[p].history)
        for a, b in zip(results[p].history, ref.history):
            assert (a.g_steps, a.g_batches, a.g_capped) == (b.g_steps, b.g_batches, b.g_capped), p
            for key in KEYS:
                # nan_ok: an epoch without a G step has no G loss on either engine (NaN == NaN is agreement)
                assert getattr(a, key) == pytest.approx(getattr(b, key), rel=1e-10, abs=1e-10, nan_ok=True), (p, key)
        for mine, theirs in zip(g_params(pop, p), ref_params):
            assert (mine - theirs).abs().max().item() < 1e-10, p
        assert results[p].verdict.label == ref.verdict.label


def run_with_compaction(pop):
    """Run the population, recording each G step's `rows`; fail unless some step ran compacted."""
    calls = []
    real = pop._g_step
    pop._g_step = lambda *a, **k: (calls.append(k.get("rows", a[4] if len(a) > 4 else None)), real(*a, **k))[1]
    results = pop.run()
    assert any(rows is not None for rows in calls), "no compacted step ran"
    return results


class Killed(Exception):
    """A training stopped by `die_at`, as a kill would stop it."""


def die_at(epoch):
    """A population callback that raises `Killed` at `epoch`."""
    def cb(p, ev):
        if ev.record.epoch == epoch:
            raise Killed

    return cb


def epoch_record(epoch, **kw):
    """An `EpochRecord` of a quiet, healthy epoch, with `kw` changed (for the outcome judge and the records)."""
    from gan_core.records import EpochRecord

    base = dict(epoch=epoch, step=epoch, loss_d=1.3, loss_g=-0.6, d_real=0.6, d_fake=0.4, clamp_rate=0.0,
                grad_d=0.5, grad_d_max=1.0, grad_g=0.5, grad_g_max=1.0, frozen_grad_d=0.0, frozen_grad_g=0.0,
                leak_d=0.0, leak_g=0.0, g_steps=10, g_batches=10, g_capped=0, nonfinite=0, weights_finite=True,
                batches=10, seconds=1.0, samples_per_s=640.0, d_sv_1=float("nan"), d_sv_2=float("nan"),
                r1_penalty=0.0, real_target=1.0, noise_std=0.0, ema_distance=0.0, g_hung_bound=0, g_hung_zero=0,
                g_phase_max=1)
    return EpochRecord(**(base | kw))


# -- a study with known outcomes, for reports -------------------------------------------------------------

def add(study, number, clamp, seed, outcome, fld, state=None, **attrs):
    """Add a finished trial of arm `clamp` to `study` (COMPLETE unless `state` says otherwise)."""
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    state = TrialState.COMPLETE if state is None else state
    sealed = outcome in ("diverged", "d_overpowered", "stalled")
    ua = {"seed": seed, "outcome": outcome, "outcome_epoch": 2, "evidence": f"{outcome} evidence",
          "sealed": sealed, "mechanism": attrs.pop("mechanism", outcome), "final_fld": fld,
          "final_coverage": 10 if outcome == "success" else 2, "seconds": 1.0, "samples_per_s": 1000.0,
          "mlflow_run_id": f"run{number}", "config": {"clamp": clamp, "seed": seed}, **attrs}
    if state == TrialState.FAIL:
        ua = {"seed": seed, "fail_reason": "RuntimeError: boom", "mlflow_run_id": f"run{number}"}
    value = fld if state == TrialState.COMPLETE else None
    study.add_trial(create_trial(params={"clamp": clamp},
                                 distributions={"clamp": CategoricalDistribution(["none", "clamp", "logits"])},
                                 value=value, state=state, user_attrs=ua))


@pytest.fixture
def study():
    """An in-memory study with known outcomes per arm of `clamp` (the report tests count on them)."""
    import math

    import optuna
    from optuna.trial import TrialState

    s = optuna.create_study(direction="minimize")
    s.set_user_attr("spec", {"source": "fixture", "description": "known outcomes", "profile": "quick",
                             "metric": "fld", "pitfall": 1, "baseline": {"clamp": "clamp"}, "fixed": {}})
    # none: 4 of 5 diverged, 1 poor; clamp: 1 success of 5 (2 stalled, 2 collapse); logits: 3 of 5 success.
    n = 0
    for seed, outcome in enumerate(["diverged", "diverged", "diverged", "diverged", "poor_quality"]):
        add(s, n, "none", seed, outcome, math.nan if outcome == "diverged" else 900.0,
            state=TrialState.PRUNED if outcome == "diverged" else TrialState.COMPLETE); n += 1
    for seed, (outcome, fld) in enumerate([("success", 100.0), ("stalled", 2000.0), ("stalled", 2100.0),
                                          ("mode_collapse", 1200.0), ("mode_collapse", 1300.0)]):
        mech = "dead_gradients" if outcome == "stalled" else outcome
        add(s, n, "clamp", seed, outcome, fld, mechanism=mech,
            state=TrialState.PRUNED if outcome == "stalled" else TrialState.COMPLETE); n += 1
    for seed, (outcome, fld) in enumerate([("success", 80.0), ("success", 90.0), ("success", 120.0),
                                          ("mode_collapse", 1000.0), ("poor_quality", 700.0)]):
        add(s, n, "logits", seed, outcome, fld); n += 1
    add(s, n, "logits", 5, None, None, state=TrialState.FAIL)
    return s


# -- a package's imports, read from its source ---------------------------------------------------------------

def module_name(path: Path, package: Path) -> str:
    """The dotted name of the module at `path` in the package folder `package` (a package by its own name)."""
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_nodes(package: Path):
    """(module name, AST node) for every node of every module of the package folder `package`: what a module
    does inside a function is read as well as what it does at its top."""
    for path in sorted(package.rglob("*.py")):
        name = module_name(path, package)
        for node in ast.walk(ast.parse(path.read_text())):
            yield name, node


def import_graph(package: Path, relative: bool) -> dict[str, set[str]]:
    """Every module of the package folder `package` and the package's modules it imports, function-local
    imports included (a name imported from a package that is one of its modules counts as that module; a
    module importing from itself is an edge to itself, a circle). Relative imports are resolved where
    `relative`; elsewhere the package imports by absolute path only."""
    modules = {module_name(p, package): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, node in source_nodes(package):
        if isinstance(node, ast.ImportFrom):
            module = node.module
            if node.level:
                assert relative, f"{name}: relative import ({package.name} imports by absolute path)"
                here = name.split(".") if modules[name].name == "__init__.py" else name.split(".")[:-1]
                module = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
            if module and module.split(".")[0] == package.name:
                for alias in node.names:
                    sub = f"{module}.{alias.name}"
                    graph[name].add(sub if sub in modules else module)
        elif isinstance(node, ast.Import):
            graph[name] |= {a.name for a in node.names if a.name.split(".")[0] == package.name}
    return {name: {d for d in deps if d in modules} for name, deps in graph.items()}
