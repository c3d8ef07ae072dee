"""`gan-sweep train`: one run end to end, and every user mistake as one line, exit 2, nothing written."""

import json
import os
import subprocess
import sys

import pytest
from conftest import assert_one_line_error, main_cli
from typer.testing import CliRunner

from sweeps.cli import app

runner = CliRunner()
QUICK = ["--dataset", "mnist-10k", "--device", "cpu", "--epochs", "2", "--steps-per-epoch", "5",
         "--eval-samples", "200"]


@pytest.mark.slow
def test_train_writes_grid_summary_and_prints_the_outcome(tmp_path, evaluator):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--no-track", "--out", str(out), *QUICK, "--lr-d", "2e-4", "--clamp", "logits"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    # ten steps from an untrained G: one grey mush for every z, no digit in it: G has not started
    assert summary["outcome"] == "untrained" and "has not started" in summary["evidence"]
    assert summary["quality"]["distinct"] < 0.1 and summary["quality"]["legible"] < 0.05
    assert summary["config"]["lr_d"] == 2e-4 and summary["config"]["clamp"] == "logits"
    assert len(summary["history"]) == summary["epochs_trained"] >= 1
    assert (out / "samples.png").stat().st_size > 1000 and (out / "losses.png").is_file()
    assert summary["outcome"] in result.stdout and summary["evidence"][:20] in result.stdout.replace("\n", "")


@pytest.mark.parametrize("args, message", [
    (["--clamp", "sometimes"], "'sometimes' is not one of 'none', 'clamp', 'logits'"),
    (["--lr-d", "-1"], "lr_d must be > 0, got -1"),
    (["--lr-g", "0"], "lr_g must be > 0, got 0"),
    (["--epochs", "0"], "epochs must be > 0, got 0"),
    (["--dataset", "cifar"], "unknown dataset 'cifar'"),
    (["--data-dir", "/no/such/dir"], "data dir not found: /no/such/dir"),
    (["--device", "cuda"], "no CUDA GPU is available here"),
    (["--freeze", "ice"], "'ice' is not one of 'requires_grad', 'eval_only'"),
    (["--epochs", "two"], "Invalid value for '--epochs': Input should be a valid integer"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    base = ["--dataset", "mnist-10k", "--device", "cpu"]
    code, _, err = main_cli(["train", "--no-track", "--out", out, *base, *args], capsys)
    assert_one_line_error(err, code, message)
    assert not out.exists()


def test_unknown_flag_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sweeps", "train", "--warp-speed", "9"],
                          capture_output=True, text=True, env=os.environ | {"COLUMNS": "200"})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--warp-speed" in proc.stderr


@pytest.mark.slow
def test_train_no_track_never_imports_optuna_or_mlflow(tmp_path, evaluator):
    code = (
        "import sys\n"
        "from sweeps.cli import main\n"
        "try:\n"
        f"    main(['train', '--no-track', '--out', {str(tmp_path / 'r')!r}, *{QUICK!r}])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "bad = [m for m in ('optuna', 'mlflow') if m in sys.modules]\n"
        "print('IMPORTED', bad)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert "IMPORTED []" in proc.stdout


def test_train_with_tracking_logs_one_finished_mlflow_run(tmp_path, evaluator):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "run"), "--tracking-uri", uri, *QUICK])
    assert result.exit_code == 0, result.output
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.data.params["epochs"] == "2" and run.data.tags["outcome"] in result.stdout
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss_d")] == [1, 2]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"samples.png", "summary.json", "loss_curves.png"}


def test_the_sample_grid_tiles_as_torchvision_s_make_grid():
    """The grid is drawn without importing torchvision.utils (2 s of start-up): pixel for pixel what
    make_grid(nrow=8, padding=2, pad_value=0.5) draws, for a full grid and a ragged last row."""
    import torch
    from torchvision.utils import make_grid

    from sweeps.stores.artifacts import grid_pixels

    for n in (64, 10, 3):
        samples = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(n))
        expected = (make_grid(samples, nrow=8, padding=2, pad_value=0.5).clamp(0, 1) * 255).round().byte()
        assert (torch.from_numpy(grid_pixels(samples).copy()).permute(2, 0, 1) == expected).all(), n
