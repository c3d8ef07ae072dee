"""The engines keep the memory a step frees (gan_core/allocator.py): a large block allocated again after
it was freed costs no new page faults, so a step's stacked gradients cost no kernel time."""

import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import resource, sys, torch
    if sys.argv[1] == "engine":  # what an engine's construction does, and nothing else
        from gan_core.config import RunConfig
        from gan_core.data import load_dataset
        from gan_core.trainer import Trainer
        Trainer(RunConfig().replace(dataset="mnist-10k", device="cpu"), load_dataset("mnist-10k"))
    n = 38 << 20  # lr-study's stacked D weight gradient: 12 x 784 x 1024 floats
    torch.ones(n // 4)  # allocated, touched and freed once
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        torch.ones(n // 4)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={"OMP_NUM_THREADS": "1", "GAN_SWEEP_OFFLINE": "1", "PATH": ""})
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator is what is tuned")
def test_an_engine_keeps_freed_blocks_so_reallocating_them_costs_no_page_faults():
    from gan_core import allocator

    if not allocator.keep_freed_memory():
        pytest.skip("this C library has no glibc mallopt")
    pages = (38 << 20) // 4096
    plain, engine = page_faults("plain"), page_faults("engine")
    assert plain >= 9 * pages, plain  # without it, every reallocation maps and touches fresh pages
    # with it, the block comes back from the heap (the heap may grow once more, if a small allocation
    # landed in the freed space: one block's pages, not ten)
    assert engine <= 2 * pages, engine
