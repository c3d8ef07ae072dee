"""The panel of real runs: sample sets gan-sweep's own trainer made while running the built-in studies
(`python -m sweeps.panel_build`), each labelled by eye from its grid alone, which the judge answers to.

Each set is 2,000 samples as uint8 (`<id>.npy.xz`, LZMA) with what made it (`index.json`: study,
configuration, seed, epoch) and its labels (`labels.json`): every labelling by eye, each made from the
8x8 grid of the set's first 64 samples without the judge's label or the run's settings, and the panel's
label, which the labellings' majority gives (a set they split on is `undecided` and counted apart). The
sets are split once, by run, into a half the judge's thresholds were tuned on (`tune`) and a half it is
reported on (`held_out`): a run's snapshots all fall in one half, so no run is seen on both sides.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

PANEL_DIR = resources.files("gan_core") / "data_files" / "panel"
UNDECIDED = "undecided"
"""The panel's label of a set whose labellings split with no majority."""
HALVES = ("tune", "held_out")
EYE_LABELS = ("success", "poor_quality", "mode_collapse", "untrained")
"""What a labeller may say of a grid: the labels a grid can show (the sealed ones come from training)."""


@dataclass(frozen=True)
class PanelSet:
    """One labelled set of the panel."""

    id: str
    """Its id: study, configuration index, seed and epoch (`sweeps.panel_build.set_id`)."""
    meta: dict
    """What made it: study, params, seed, epoch, the run's epochs."""
    eye: tuple[str, ...]
    """Every labelling by eye, in the order they were made."""
    half: str
    """tune or held_out."""

    @property
    def label(self) -> str:
        """The labellings' majority (UNDECIDED where there is none)."""
        (top, n), *rest = Counter(self.eye).most_common()
        return top if n > len(self.eye) / 2 else UNDECIDED

    @property
    def success(self) -> bool | None:
        """Whether the majority calls it a working GAN (None where the labellings split on that)."""
        yes = sum(e == "success" for e in self.eye)
        no = len(self.eye) - yes
        return True if yes > no else False if no > yes else None

    def samples(self, folder: Path | None = None) -> torch.Tensor:
        """The 2,000 samples [N, 784] in [0, 1]."""
        pixels = read_pixels((folder or Path(str(PANEL_DIR))) / f"{self.id}.npy.xz")
        return torch.from_numpy(pixels).float().div(255).reshape(len(pixels), -1)


def read_pixels(path: Path) -> np.ndarray:
    """A set's uint8 pixels [N, 28, 28] from its LZMA-compressed .npy (never a pickle)."""
    return np.load(io.BytesIO(lzma.decompress(path.read_bytes())), allow_pickle=False)


def run_of(set_id: str) -> str:
    """The run a set was snapshotted from (its id without the epoch)."""
    return set_id.rsplit("-e", 1)[0]


def half_of(set_id: str) -> str:
    """tune or held_out, by a hash of the set's run: fixed, and never splitting a run."""
    return HALVES[hashlib.sha256(run_of(set_id).encode()).digest()[0] % 2]


def load(folder: Path | None = None) -> list[PanelSet]:
    """Every labelled set of the panel (a set without labels yet is left out)."""
    folder = folder or Path(str(PANEL_DIR))
    index = json.loads((folder / "index.json").read_text())
    labels = json.loads((folder / "labels.json").read_text())
    return [PanelSet(sid, index[sid], tuple(labels[sid]["eye"]), half_of(sid)) for sid in sorted(labels)
            if sid in index]


@dataclass(frozen=True)
class Agreement:
    """How often the judge agrees with the panel on one half."""

    half: str
    """tune or held_out."""
    sets: int
    """Sets of that half the labellings decide (undecided ones are counted apart)."""
    success_agree: int
    """Sets where the judge and the panel agree on success or not."""
    kind_sets: int
    """Sets both call a failure."""
    kind_agree: int
    """Of those, sets where they agree on the failure's kind."""
    undecided: int
    """Sets the labellings split on."""

    @property
    def success_share(self) -> float:
        return self.success_agree / self.sets if self.sets else float("nan")

    @property
    def kind_share(self) -> float:
        return self.kind_agree / self.kind_sets if self.kind_sets else float("nan")


def agreement(panel: list[PanelSet], judged: dict[str, str], half: str) -> Agreement:
    """The judge's labels (`judged`: set id -> label) against the panel's on one half."""
    sets = [s for s in panel if s.half == half]
    decided = [s for s in sets if s.success is not None]
    success_agree = sum((judged[s.id] == "success") == s.success for s in decided)
    failures = [s for s in decided if not s.success and judged[s.id] != "success" and s.label != UNDECIDED]
    kind_agree = sum(judged[s.id] == s.label for s in failures)
    return Agreement(half, len(decided), success_agree, len(failures), kind_agree, len(sets) - len(decided))


def sets_by_label(panel: list[PanelSet]) -> dict[str, int]:
    """How many sets the panel gives each label."""
    return dict(Counter(s.label for s in panel))


def iter_samples(panel: list[PanelSet], folder: Path | None = None) -> Iterator[tuple[PanelSet, torch.Tensor]]:
    for s in panel:
        yield s, s.samples(folder)
