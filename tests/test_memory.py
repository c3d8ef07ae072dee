"""Memory: a configuration the machine cannot hold is refused in one line before anything is allocated, and
the estimate that decides it is an upper bound of what real runs take (measured here as the peak resident
memory of a fresh process), not so loose that it refuses what would run."""

import json
import os
import subprocess
import sys

import pytest

from gan_core import memory
from gan_core.config import ConfigError, RunConfig

CHILD = """
import json, re, sys, torch
torch.set_num_threads(1)
from gan_core.config import RunConfig
from gan_core.data import load_dataset
from gan_core.judge.evaluator import Evaluator
kw, members = json.loads(sys.argv[1]), int(sys.argv[2])
ds = load_dataset("mnist-10k")
cfg = RunConfig().replace(dataset="mnist-10k", device="cpu", epochs=1, steps_per_epoch=2, stop_early=False, **kw)
ev = Evaluator(ds)
if members > 1:
    from gan_core.population import PopulationTrainer
    PopulationTrainer([cfg.replace(seed=i) for i in range(members)], ds, ev).run()
else:
    from gan_core.trainer import Trainer
    Trainer(cfg, ds, ev).run()
# VmHWM is this process image's own peak: ru_maxrss survives execve on Linux, and would report the
# peak of the test process that forked this one (2.39 GiB for both cases under the whole suite)
print(int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024)
"""


@pytest.mark.slow  # two fresh processes that train wide networks (about 40 s)
@pytest.mark.parametrize("kw,members", [
    ({"g_hidden": "4096,4096", "d_hidden": 4096, "eval_samples": 500}, 1),  # the networks dominate
    ({"g_hidden": "2048,2048", "eval_samples": 500}, 4),                    # a population of them
])
def test_the_estimate_bounds_the_measured_peak_from_above_within_a_few_times(kw, members):
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(kw), str(members)], capture_output=True,
                          text=True, timeout=600, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak = int(proc.stdout.split()[-1])
    cfg = RunConfig().replace(dataset="mnist-10k", epochs=1, **kw)
    est = memory.estimate(cfg, members, images=10_000).total
    assert peak < est < 3 * peak, f"peak {peak / 2**30:.2f} GiB, estimate {est / 2**30:.2f} GiB"


def test_a_configuration_beyond_the_machine_is_refused_naming_the_estimate_and_the_memory():
    wide = RunConfig().replace(g_hidden="65536,65536")  # the largest accepted width: 16 GiB per weight matrix
    with pytest.raises(ConfigError, match=r"needs about \d+\.\d GiB of memory .* this machine has \d+\.\d GiB"):
        memory.check([wide], 1, 10_000)
    assert memory.check([RunConfig()], 16, 70_000).total < memory.available_bytes()  # the defaults fit


def test_k_nn_distances_are_held_a_block_at_a_time_and_equal_one_pass(monkeypatch):
    """k-NN radii and the manifold tests hold at most KNN_BLOCK_BYTES of distances at a time (20,000
    samples against themselves would be 3.2 GB in one piece), with the values of one pass (to the last bits
    the matrix product's blocking can move; a set of up to 2,896 rows against as many is one block, exactly
    as before)."""
    import torch

    from gan_core.judge import metrics

    real, fake = torch.randn(2000, 16, dtype=torch.float64), torch.randn(7000, 16, dtype=torch.float64)
    one_pass = torch.cdist(fake, fake).topk(4, dim=1, largest=False).values[:, 3]
    d = torch.cdist(fake, real)
    r_real = torch.cdist(real, real).topk(4, dim=1, largest=False).values[:, 3]
    expected = ((d <= r_real[None]).any(1).double().mean().item(), (d.T <= one_pass[None]).any(1).double().mean().item())
    sizes = []
    cdist = torch.cdist
    monkeypatch.setattr(torch, "cdist", lambda a, b: sizes.append(len(a) * len(b) * 8) or cdist(a, b))
    monkeypatch.setattr(metrics, "KNN_BLOCK_BYTES", 8 << 20)  # 7,000 x 7,000 doubles = 392 MB in one piece
    assert torch.allclose(metrics.knn_radii(fake), one_pass, rtol=1e-12, atol=0)
    assert metrics.precision_recall(real, fake, real_radii=r_real) == pytest.approx(expected, abs=1e-3)
    assert len(sizes) > 10 and max(sizes) <= 8 << 20
