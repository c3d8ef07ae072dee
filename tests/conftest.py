"""Shared fixtures. Everything runs on the CPU; the evaluator is the package's shipped MNIST one
(caches of anything else go under .pytest_cache)."""

from __future__ import annotations

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
    from gan_core.evaluator import Evaluator

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
    creates a study for workers, gains nothing from a process of its own, whose start costs about 10 s
    of CPU (torch, MLflow). Its stdout and stderr together."""
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
    where: it is sent SIGABRT, which makes one started with PYTHONFAULTHANDLER=1 (`test_scaleout.gan_sweep`)
    print every thread's stack, and the test fails with them."""
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        out = proc.communicate(timeout=60)[0]
        pytest.fail(f"still running after {timeout} s; its threads when stopped:\n{(out or '')[-8000:]}")
