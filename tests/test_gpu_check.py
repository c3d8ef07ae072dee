"""The GPU check script, run on the CPU with tiny sizes: the one command a GPU machine runs works."""

import json

import forked
import pytest


@pytest.mark.slow
def test_the_gpu_check_runs_end_to_end_on_the_cpu(tmp_path):
    out = tmp_path / "gc"
    proc = forked.run("-m", "sweeps.gpu_check", "--device", "cpu", "--sizes", "2", "--steps", "4", "--repeats", "1",
                      "--trials", "2", "--epochs", "1", "--out", out, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "gpu_check.json").read_text())
    engines = {(r["engine"], r["precision"], r["schedule"]) for r in summary["bench"]["rows"]}
    assert {("(a) seed loop", "fp32", "fixed"), ("(c) population", "bf16", "fixed"),
            ("(d) population", "fp32", "adaptive"), ("(e) reference + r1_gamma", "fp32", "fixed"),
            ("(f) lr-study-quick epoch loop", "fp32", "fixed")} <= engines
    assert summary["best_ratio_vs_seed_loop"] > 0 and "ran 2 trials now" in summary["lr_study"]["summary"]
    assert list((out / "reports").glob("*/report.html"))
    assert "x the seed-style loop" in proc.stdout and "main job lr-study-quick: 54,000 member-steps" in proc.stdout
