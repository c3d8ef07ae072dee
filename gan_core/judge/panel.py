"""The panel of real runs: sample sets gan-sweep's own trainer made while running the built-in studies
(`python -m sweeps.panel_build`), each labelled by eye from its grid alone, which the judge answers to.

Each set is 2,000 samples as uint8 (`<id>.npy.xz`, LZMA) with what made it (`index.json`: study,
configuration, seed, epoch, a hash of its pixels) and its labels (`labels.json`): every labelling by eye,
each made from the 8x8 grid of the set's first 64 samples without the judge's label or the run's settings.
Snapshots with identical pixels (one configuration in two studies, a G that stopped moving) are one image to
the panel, with every labelling any of them got; the panel's label is the labellings' majority (an image
they split on is `undecided` and counted apart).

The images are split once, by run, into a half the judge's thresholds were tuned on (`tune`) and a half it
is reported on (`held_out`): runs that share an identical snapshot are one run, so no run, and no image, is
seen on both sides; the runs are dealt alternately in order of their labellings' commonest label (then of
a hash of their name), so each half holds its share of every label.
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
    """One labelled image of the panel (a set, and any snapshots with identical pixels)."""

    id: str
    """Its id: study, configuration index, seed and epoch (`sweeps.panel_build.set_id`); the first of its twins."""
    meta: dict
    """What made it: study, params, seed, epoch, the run's epochs."""
    eye: tuple[str, ...]
    """Every labelling by eye of it and its twins, in the order of their ids."""
    half: str
    """tune or held_out."""
    twins: tuple[str, ...] = ()
    """The other sets with the same pixels (labelled apart, under other random names)."""

    @property
    def label(self) -> str:
        """The labellings' majority (UNDECIDED where there is none)."""
        return majority(self.eye)

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


def majority(eye: tuple[str, ...] | list[str]) -> str:
    """The label more than half of the labellings give (UNDECIDED where none does)."""
    (top, n), *rest = Counter(eye).most_common()
    return top if n > len(eye) / 2 else UNDECIDED


def split(index: dict, labels: dict) -> dict[str, str]:
    """Each set's half: runs that share an identical snapshot are joined into one, and the joined runs are
    dealt tune, held_out, tune, ... in order of their labellings' commonest label, then of a hash of the
    first run's name (fixed by the panel's content, and never splitting a run or an image)."""
    parent: dict[str, str] = {}

    def root(run: str) -> str:
        while parent.setdefault(run, run) != run:
            run = parent[run]
        return run

    first: dict[str, str] = {}
    for sid in sorted(index):
        twin = first.setdefault(index[sid].get("pixels_sha256", sid), run_of(sid))
        a, b = root(twin), root(run_of(sid))
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[str, list[str]] = {}
    for sid in sorted(index):
        groups.setdefault(root(run_of(sid)), []).append(sid)
    order = sorted(groups, key=lambda g: (majority([e for sid in groups[g] for e in labels[sid]["eye"]]),
                                          hashlib.sha256(g.encode()).hexdigest()))
    return {sid: HALVES[i % 2] for i, g in enumerate(order) for sid in groups[g]}


def load(folder: Path | None = None) -> list[PanelSet]:
    """Every labelled image of the panel, twins pooled (a set without labels yet is left out)."""
    folder = folder or Path(str(PANEL_DIR))
    index = json.loads((folder / "index.json").read_text())
    labels = {k: v for k, v in json.loads((folder / "labels.json").read_text()).items() if k in index}
    index = {k: v for k, v in index.items() if k in labels}
    halves = split(index, labels)
    images: dict[str, list[str]] = {}
    for sid in sorted(index):
        images.setdefault(index[sid].get("pixels_sha256", sid), []).append(sid)
    return [PanelSet(ids[0], index[ids[0]], tuple(e for sid in ids for e in labels[sid]["eye"]), halves[ids[0]],
                     tuple(ids[1:])) for ids in sorted(images.values())]


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
