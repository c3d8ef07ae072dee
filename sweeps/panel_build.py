"""Build the judge's panel of real runs: sample sets that gan-sweep's own trainer makes when it runs the
built-in studies, early, midway and at the end, to be labelled by eye (`gan_core/judge/panel.py` reads them).

    python -m sweeps.panel_build OUT_DIR          # trains every planned run once; resumable
    python -m sweeps.panel_build OUT_DIR --pack labels.json gan_core/data_files/panel   # with the labels

Each planned run is one configuration of a built-in study at its quick profile (the study's own fixed
settings and budget, epochs as planned here), at seeds the studies themselves never use (100 and up),
trained to its end without early stopping. At each snapshot epoch the exact 2,000 samples the evaluator
scored are kept as uint8 (`<set id>.npy.xz`), with what produced them beside them (`<set id>.json`): study, configuration,
seed, epoch. Nothing about the judge's label is kept here: the labels are given by eye, from the grid
alone, and stored apart.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

PANEL_SEEDS = (100, 101)
"""Seeds no built-in study runs: the panel never holds a run the studies report."""


@dataclass(frozen=True)
class Planned:
    """Runs of one study for the panel."""

    study: str
    """A built-in study."""
    params: tuple[dict[str, Any], ...]
    """Its configurations to run (grid points)."""
    seeds: tuple[int, ...]
    """The seeds of each."""
    epochs: int
    """Epochs each run trains (no early stop)."""
    snapshots: tuple[int, ...]
    """Epochs whose samples join the panel."""


WORKING = dict(g_output="tanh", d_hidden=1024, schedule="fixed", g_loss="non_saturating", beta1=0.5)
READINGS = dict(g_loop_cap="off", rest_k_countdown="every_batch", tmp_loss="batch", d_output="sigmoid",
                g_output="none", beta1=0.9)
PLAN = (
    Planned("lr-study", tuple({"lr_d": lr, "lr_g": lr} for lr in (1e-5, 1e-4, 1e-3, 1e-2)), PANEL_SEEDS, 36,
            (4, 12, 36)),
    Planned("lr-study", ({"lr_d": 1e-3, "lr_g": 1e-3},), (102, 103), 72, (24, 72)),
    Planned("clamp-study", tuple({"clamp": c, "lr_d": lr, "lr_g": lr} for c in ("none", "clamp", "logits")
                                 for lr in (1e-3, 2e-2)), PANEL_SEEDS[:1], 8, (2, 8)),
    Planned("clip-study", tuple({"clip_d": c, "clip_g": c, "lr_d": lr, "lr_g": lr} for c in ("off", 1.0)
                                for lr in (1e-3, 2e-2)), PANEL_SEEDS[:1], 8, (2, 8)),
    Planned("freeze-study", tuple({"freeze": f, "zero_grad": z} for f in ("requires_grad", "eval_only")
                                  for z in ("both_before_backward", "own_after_step")), PANEL_SEEDS[:1], 8, (2, 8)),
    Planned("schedule-study", ({"schedule": "adaptive", "g_loop_cap": 20}, {"schedule": "adaptive", "g_loop_cap": 1000},
                               {"schedule": "fixed", "d_steps": 1}, {"schedule": "fixed", "d_steps": 5}),
            PANEL_SEEDS[:1], 32, (4, 12, 32)),
    Planned("g-loss-study", tuple({"g_loss": g, "schedule": s} for g in ("saturating", "non_saturating")
                                  for s in ("adaptive", "fixed")), PANEL_SEEDS[:1], 12, (4, 12)),
    Planned("ablation", ({}, {"clamp": "none"}, {"schedule": "fixed"}, {"g_loss": "non_saturating"},
                         {"lr_d": 1e-3, "lr_g": 1e-3}, {"g_output": "tanh"}), PANEL_SEEDS[:1], 8, (2, 8)),
    Planned("cures-study", ({}, {"spectral_norm": True}, {"r1_gamma": 1.0}, {"instance_noise": 0.1},
                            WORKING | {"lr_d": 1e-3, "lr_g": 1e-3}, WORKING | {"lr_d": 1e-3, "lr_g": 1e-3, "g_ema": 0.999},
                            WORKING | {"lr_d": 1e-3, "lr_g": 1e-3, "label_smoothing": 0.1},
                            WORKING | {"lr_d": 1e-3, "lr_g": 1e-3, "clamp": "none"}),
            PANEL_SEEDS[:1], 32, (4, 16, 32)),
    Planned("reproduce-seed", (READINGS, READINGS | {"g_loop_cap": 20}, READINGS | {"rest_k_countdown": "untrained_batches"},
                               READINGS | {"tmp_loss": "epoch_mean"}, READINGS | {"d_output": "raw"},
                               READINGS | {"g_output": "sigmoid"}, READINGS | {"g_output": "tanh"},
                               READINGS | {"beta1": 0.5}), PANEL_SEEDS[:1], 240, (20, 80, 240)),
)


LEVEL = 4
"""The panel keeps 64 grey levels (uint8 multiples of 4, and 255): the lowest two bits of a GAN's pixels are
sampling noise no grid shows, and they cost half the panel's size. The judge is tuned and checked on exactly
what is kept (its measures move by under 1% of FLD and 0.01 of legibility)."""


def save_set(path: Path, pixels: np.ndarray) -> None:
    """uint8 [N, 28, 28] at 64 grey levels, as an .npy stream compressed with LZMA (a fifth smaller than zlib
    on GAN samples, whose backgrounds are rarely exactly zero)."""
    import io
    import lzma

    kept = np.clip((pixels.astype(np.int32) + LEVEL // 2) // LEVEL * LEVEL, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    np.save(buf, kept, allow_pickle=False)
    path.write_bytes(lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME))


def pack(src: Path, labelled: Path, dst: Path) -> None:
    """The panel as the package keeps it (`gan_core/judge/panel.py`): every built set of `src` re-saved at 64
    grey levels into `dst`, its `index.json` (what made each set) and `labels.json` from `labelled`
    ({set id: {"eye": [labels], "how": "..."}})."""
    from gan_core.judge.panel import read_pixels

    dst.mkdir(parents=True, exist_ok=True)
    labels = json.loads(labelled.read_text())
    index = {}
    for path in sorted(src.glob("*.npy.xz")):
        sid = path.name[:-len(".npy.xz")]
        if sid not in labels:
            continue
        meta = src / f"{sid}.json"
        index[sid] = json.loads(meta.read_text()) if meta.exists() else json.loads(
            (src / "index.json").read_text())[sid]
        save_set(dst / path.name, read_pixels(path))
        # identical snapshots (one configuration in two studies, a G that stopped moving) are one image to the panel
        index[sid]["pixels_sha256"] = hashlib.sha256(read_pixels(dst / path.name).tobytes()).hexdigest()
    (dst / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    (dst / "labels.json").write_text(json.dumps({k: labels[k] for k in sorted(index)}, indent=1) + "\n")


def set_id(study: str, k: int, seed: int, epoch: int) -> str:
    return f"{study}-{k:02d}-s{seed}-e{epoch:03d}"


class Recorder:
    """An evaluator that keeps the last set of images it scored (the loop scores a member's samples right
    before it calls back with that member's epoch)."""

    def __init__(self, evaluator) -> None:
        self.inner, self.last = evaluator, None

    def quality(self, images: torch.Tensor):
        self.last = images
        return self.inner.quality(images)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def build(out: Path, only: str | None = None) -> None:
    from gan_core.data import load_dataset
    from gan_core.judge.evaluator import Evaluator
    from gan_core.population import PopulationTrainer, split_into_populations
    from sweeps.study.spec import load_spec

    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset("mnist-10k")
    recorder = Recorder(Evaluator(data))
    for plan in PLAN:
        if only and plan.study != only:
            continue
        spec, prof = load_spec(plan.study).for_profile("quick")
        every = math.gcd(*plan.snapshots)
        runs = []
        for k, params in enumerate(plan.params):
            for seed in plan.seeds:
                cfg = spec.run_config(params, seed, prof, dataset="mnist-10k", device="cpu", epochs=plan.epochs,
                                      eval_every=every, eval_samples=2000, stop_early=False, precision="fp32")
                ids = [set_id(plan.study, k, seed, e) for e in plan.snapshots]
                if not all((out / f"{i}.npy.xz").exists() for i in ids):
                    runs.append((cfg, params, k, seed))
        for group in split_into_populations([r[0] for r in runs], 16):
            members = [runs[i] for i in group]

            def keep(p, event, members=members):
                cfg, params, k, seed = members[p]
                epoch = event.record.epoch
                if epoch not in plan.snapshots or event.record.quality is None or recorder.last is None:
                    return None
                sid = set_id(plan.study, k, seed, epoch)
                pixels = (recorder.last.clamp(0, 1) * 255).round().to(torch.uint8).reshape(-1, 28, 28).numpy()
                save_set(out / f"{sid}.npy.xz", pixels)
                meta = {"study": plan.study, "params": {k2: str(v) for k2, v in params.items()}, "seed": seed,
                        "epoch": epoch, "epochs": plan.epochs}
                (out / f"{sid}.json").write_text(json.dumps(meta, indent=1, sort_keys=True))  # one file a set:
                # several builders (one a study) can run side by side
                print(f"kept {sid}", flush=True)
                return None

            PopulationTrainer([m[0] for m in members], data, recorder, callbacks=[keep]).run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--study", default=None, help="Build only this study's runs.")
    parser.add_argument("--pack", nargs=2, type=Path, metavar=("LABELS_JSON", "DEST"), default=None,
                        help="Instead of building: pack the sets built in OUT with their labels into DEST.")
    args = parser.parse_args()
    if args.pack:
        pack(args.out, *args.pack)
    else:
        build(args.out, args.study)


if __name__ == "__main__":
    main()
