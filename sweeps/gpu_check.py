"""The GPU check, one command: `python -m sweeps.gpu_check` (about 5 minutes on an H100).

1. `gan-sweep bench` on the device, populations up to 512 members, every precision the device has;
2. a short `gan-sweep run lr-study --profile full --engine population` (all 100 trials, a few epochs)
   with its report;
3. the figures, printed and written to <out>/gpu_check.json: the best member-steps/s against the
   seed-style loop, the adaptive schedule's cost, the study's outcomes and wall-clock time.

The same script runs on a CPU (`--device cpu --sizes 2 --steps 4 --repeats 1 --trials 2 --epochs 1`): CI does, so the
GPU's one command is known to work before a GPU is lent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweeps.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", default="8,32,128,512", help="population sizes for the bench")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per lr-study trial")
    parser.add_argument("--trials", type=int, default=None, help="most lr-study trials (default: all 100)")
    parser.add_argument("--steps", type=int, default=40, help="batches per timed bench block")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved bench rounds")
    parser.add_argument("--out", type=Path, default=Path("gpu-check"), help="folder for every file it writes")
    args = parser.parse_args(argv)

    from gan_core.files import make_dir, write_atomic
    from sweeps.paths import check_writable_dir
    from sweeps.running.bench import run_bench

    check_writable_dir(args.out, "--out")
    make_dir(args.out)
    sizes = [int(s) for s in args.sizes.split(",")]
    t0 = time.perf_counter()
    bench = run_bench(args.device, sizes, steps=args.steps, repeats=args.repeats, log=print)
    bench_s = time.perf_counter() - t0
    best = bench["best"]
    print(f"bench: best {best['member_steps_per_s']:.0f} member-steps/s ({best['members']} members, "
          f"{best['precision']}) = {best['ratio_vs_seed_loop']:.1f}x the seed-style loop; adaptive schedule "
          f"{bench['adaptive_cost_per_update_vs_fixed']:.2f}x the fixed schedule's time per update ({bench_s:.0f} s)")
    st = bench["study"]  # the main job's own population through the epoch loop, beside its floor
    print(f"main job {st['study']}: {st['member_steps']:,} member-steps, projected {st['projected_seconds'] / 60:.1f} min "
          f"on this device, {st['times_floor']:.2f}x its floor ({bench['matmul_gflops']:.0f} GFLOP/s fp32 matmuls), "
          f"{st['times_floor_with_optimiser']:.2f}x with its optimiser's bytes ({bench['memory_gbs']:.0f} GB/s)")

    run = [sys.executable, "-m", "sweeps", "run", "lr-study", "--profile", "full", "--engine", "population",
           "--device", args.device, "--dataset", "mnist-10k", "--epochs", str(args.epochs),
           "--storage", f"sqlite:///{(args.out / 'gan_sweep.db').resolve()}",
           "--tracking-uri", f"sqlite:///{(args.out / 'mlflow.db').resolve()}",
           "--out", str((args.out / "reports").resolve()), "--checkpoint-dir", str((args.out / "checkpoints").resolve())]
    if args.trials:
        run += ["--trials", str(args.trials)]
    t1 = time.perf_counter()
    proc = subprocess.run(run, cwd=args.out, env=os.environ | {"GAN_SWEEP_OFFLINE": "1"}, text=True,
                          capture_output=True)
    study_s = time.perf_counter() - t1
    write_atomic(args.out / "lr-study.log", proc.stdout + proc.stderr)
    if proc.returncode != 0:
        print(proc.stdout[-3000:] + proc.stderr[-3000:])
        print(f"the lr-study run failed (exit {proc.returncode}); its log is in {args.out / 'lr-study.log'}")
        return 1
    outcomes = next((line for line in proc.stdout.splitlines() if line.startswith("outcomes:")), "outcomes: -")
    ran = next((line for line in proc.stdout.splitlines() if line.startswith("ran ")), "")
    print(f"lr-study (full design, {args.epochs} epochs, population engine): {ran}; {outcomes} in {study_s:.0f} s")
    summary = {"device": bench["device"], "device_name": bench["device_name"], "bench": bench,
               "bench_seconds": bench_s, "lr_study": {"epochs": args.epochs, "seconds": study_s, "summary": ran,
                                                      "outcomes": outcomes},
               "best_ratio_vs_seed_loop": best["ratio_vs_seed_loop"]}
    write_atomic(args.out / "gpu_check.json", json.dumps(summary, indent=1))
    print(f"written: {args.out / 'gpu_check.json'}, the report under {args.out / 'reports'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
