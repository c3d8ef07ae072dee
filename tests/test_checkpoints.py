"""What a run saves and reads back (checkpoints, the evaluator's cached calibration): no code runs from a
checkpoint, a corrupt or squatted one is moved aside and never poisons the next run, a cached calibration
of the wrong shape is recomputed, and a full disk leaves no partial file and nothing RUNNING."""

import errno
import json
import os
import pickle
import resource
import signal
import subprocess
import sys

import optuna
import pytest
import torch
from conftest import ROOT, finish_here, stores, study_file
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from gan_core.trainer import Trainer



class Payload:
    """A pickle that runs a command when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_in_the_checkpoint_folder_runs_no_code_and_is_moved_aside(tiny_config, mnist, tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "trial.pt"
    ckpt.write_bytes(pickle.dumps(Payload(marker)))
    messages = []
    result = Trainer(tiny_config, mnist, log=messages.append).run(checkpoint=ckpt)
    assert not marker.exists(), "the checkpoint ran code"
    assert result.resumed_from == 0 and len(result.history) == tiny_config.budget.epochs
    assert not ckpt.exists() and list(tmp_path.glob("trial.pt.bad-*"))
    assert "could not be used" in messages[0] and "training from epoch 0" in messages[0]


def test_no_source_file_loads_a_pickle_unsafely():
    offenders = [str(p) for p in (ROOT / "gan_core").rglob("*.py") if "weights_only=False" in p.read_text()]
    offenders += [str(p) for p in (ROOT / "sweeps").rglob("*.py") if "weights_only=False" in p.read_text()]
    assert not offenders


@pytest.mark.parametrize("damage", ["truncated", "wrong_shape"])
def test_a_corrupt_checkpoint_is_moved_aside_and_the_next_run_is_clean(tiny_config, mnist, tmp_path, damage):
    ckpt = tmp_path / "trial.pt"
    trainer = Trainer(tiny_config, mnist)
    trainer.save_checkpoint(ckpt, [])
    if damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:200])
    else:
        blob = torch.load(ckpt, weights_only=True)
        blob["state"]["G"] = [v[:1] for v in blob["state"]["G"]]
        torch.save(blob, ckpt)
    clean = Trainer(tiny_config, mnist).run()
    first = Trainer(tiny_config, mnist, log=lambda m: None).run(checkpoint=ckpt)
    assert first.resumed_from == 0 and not ckpt.exists()
    assert [r.loss_d for r in first.history] == [r.loss_d for r in clean.history]  # no half-loaded weights
    again = Trainer(tiny_config, mnist).run(checkpoint=ckpt)  # the configuration is not poisoned
    assert [r.loss_d for r in again.history] == [r.loss_d for r in clean.history]


def test_a_folder_squatting_a_checkpoint_is_moved_aside(tiny_config, mnist, tmp_path):
    from gan_core.loop import save_checkpoint
    from gan_core.trainer import Trainer

    (tmp_path / "run.pt").mkdir()
    save_checkpoint(Trainer(tiny_config, mnist), 0, tmp_path / "run.pt", [], "reference")
    assert (tmp_path / "run.pt").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("run.pt.bad-")]


@pytest.mark.slow
def test_a_corrupt_calibration_of_a_cached_evaluator_is_recomputed(tmp_path, monkeypatch):
    from gan_core.data import Dataset, bundled_mnist
    from gan_core.judge.evaluator import Evaluator

    monkeypatch.setenv("GAN_SWEEP_CACHE", str(tmp_path))
    from gan_core.judge import evaluator as E
    from gan_core.judge.thresholds import SUCCESS_SET

    monkeypatch.setattr("gan_core.judge.classifier.CLF_EPOCHS", 1)
    every_set, built = E.build, []

    def landmark_only(*args, **kw):  # the success landmark alone: the recompute path is the point, not the scale
        built.append(1)
        return [s for s in every_set(*args, **kw) if s.name == SUCCESS_SET]

    monkeypatch.setattr(E, "build", landmark_only)
    m = bundled_mnist()
    small = Dataset("other", "test", m.images[:3000], m.labels[:3000], m.clf_images[:2100], m.clf_labels[:2100],
                    m.held_out_images[:2000], m.held_out_labels[:2000])
    ev = Evaluator(small)
    success_fld = ev.thresholds().success_fld
    side = ev.cache_path.with_suffix(".calibration.json")
    side.write_text("{not json")
    again = Evaluator(small)
    assert again.thresholds().success_fld == pytest.approx(success_fld)
    assert len(built) == 2  # computed, then recomputed (not read back from the corrupt file)
    assert set(json.loads(side.read_text())) == {SUCCESS_SET}  # rewritten whole


def test_a_cached_calibration_of_the_wrong_shape_is_recomputed_not_a_keyerror(tmp_path):
    from gan_core.judge.weights import check_calibration

    for bad in ([1, 2], {"real_noise_0.3": 5}, {}, {"x": {"fld": "high"}}):
        with pytest.raises(ValueError):
            check_calibration(bad)
    assert check_calibration({"a": {"fld": 1.5}}) == {"a": {"fld": 1.5}}


def test_a_full_disk_leaves_no_partial_file(tmp_path, monkeypatch):
    from gan_core import files

    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def full(fd, mode):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fdopen", full)
    with pytest.raises(OSError):
        files.write_atomic(target, b"new" * 1000)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


@pytest.mark.slow
def test_a_disk_that_fills_mid_run_ends_in_one_line_and_the_rerun_closes_everything(tmp_path, evaluator, capsys,
                                                                                         monkeypatch):
    """RLIMIT_FSIZE makes every file write past 4 MB fail with EFBIG, as a full disk fails it: the stores
    are created, the first checkpoint (9 MB) is not. The invocation ends in one line; the rerun (room
    again) finishes the study with no trial and no MLflow run left RUNNING and no temporary file."""
    spec = study_file(tmp_path, lrs=2, seeds=1, epochs=3, steps=4)
    storage, tracking = stores(tmp_path)
    args = [sys.executable, "-m", "sweeps", "run", str(spec), "--device", "cpu", "--engine", "reference",
            "--storage", storage, "--tracking-uri", tracking, "--out", str(tmp_path / "r"),
            "--checkpoint-dir", str(tmp_path / "ckpt")]
    env = os.environ | {"OMP_NUM_THREADS": "1"}

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (4_000_000, 4_000_000))

    proc = subprocess.run([*args, "--heartbeat", "1"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, preexec_fn=small_disk)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-3000:]
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert not [p for p in tmp_path.rglob("*.tmp")]
    monkeypatch.chdir(tmp_path)
    finish_here(capsys, *args[3:])  # the rerun, with room again: no process of its own needed
    study = optuna.load_study(study_name="scale-quick", storage=storage)
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    client = MlflowClient(tracking)
    exp = client.get_experiment_by_name("scale-quick")
    assert not client.search_runs([exp.experiment_id], filter_string="attributes.status = 'RUNNING'")
