"""The evaluator's classifier: a small CNN with a "not data" class, and its deterministic training.

Besides the data set's K classes the classifier has a (K+1)-th class, "not data", trained on
synthetic junk (noise of several kinds, flat grey images, smooth blobs, salt and pepper, pen scribbles,
filled ellipses). Without it a small CNN maps noise or ink confidently onto some digit, and
junk then looks like data to every metric; with it, "how much of this is not data at all" is one
honest number. Ink that is no digit is "not data" too: a classifier that never saw any reads a third of
scribbles among real digits as legible as a working GAN's samples.

Training is a pure function of the data and the constants below (fixed seeds, counter-based batch
order), so rerunning it reproduces the shipped weights' accuracy (`gan_core.judge.ship`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import rng
from ..data import Dataset
from .drawing import scribbles, shapes

CLASSIFIER_VERSION = 6
"""Bumped whenever the network or its training changes: weights of another version are never loaded."""
CLF_EPOCHS = 8
"""Passes over the classifier split."""
CLF_BATCH = 128
"""Real images per batch (junk images come on top)."""
CLF_SEED = 1234
"""Seeds the initial weights, the augmentation and the junk."""
CLF_MAX_LR = 3e-3
"""Peak learning rate of the one-cycle schedule."""
CLF_SHIFT = 2
"""Random translations of up to this many pixels: 8k training digits need the augmentation for 97%."""
CLF_NOISE = 0.3
"""Half of each batch's digits get speckle (up to this share of pixels) and Gaussian noise (std up to
this): GAN samples are speckled, and a classifier that never saw noise misreads their class."""
JUNK_PER_BATCH = 48
"""Synthetic non-data images added to each classifier batch, labelled K ("not data")."""


def as_images(x: torch.Tensor) -> torch.Tensor:
    """[N, D] or [N, H, W] pixels in [0, 1] -> [N, 1, 28, 28] float32 (the classifier's input)."""
    return x.reshape(len(x), 1, 28, 28).float()


def uint8_to_unit(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0


def new_classifier(num_classes: int) -> Classifier:
    """The classifier for K data classes (plus "not data"), with its fixed initial weights."""
    with torch.random.fork_rng():  # a fixed init that leaves the caller's RNG alone
        torch.manual_seed(CLF_SEED)
        return Classifier(num_classes + 1)


class MaxPool2x2(nn.Module):
    """nn.MaxPool2d(2), the same numbers, faster when nothing is trained: four strided views' maximum.

    torch's CPU max-pool over NCHW took 40% of the classifier's forward time in evaluation, about four
    times these two maximums (one thread); a maximum is exact, so the result is bit for bit the pooled one,
    NaN included. Where gradients flow (training the classifier), torch's own pool keeps its gradient
    routing on ties."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return F.max_pool2d(x, 2)
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2  # floor mode: an odd last row or column is dropped
        rows = torch.maximum(x[..., 0:h:2, :w], x[..., 1:h:2, :w])
        return torch.maximum(rows[..., 0::2], rows[..., 1::2])


class Classifier(nn.Module):
    """conv(32) -> pool -> conv(64) -> pool -> fc(128) = features -> fc(K + 1), the last "not data"."""

    def __init__(self, num_classes: int = 11) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), MaxPool2x2(),
            nn.Conv2d(32, 64, 3), nn.ReLU(), MaxPool2x2(),
            nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))



def junk_images(n: int, gen: torch.Generator, side: int = 28) -> torch.Tensor:
    """n synthetic "not data" images [n, 1, side, side] in [0, 1]: five kinds of noise, grey and blobs, and
    ink that is no digit (pen scribbles of straight segments, filled ellipses), in equal parts."""
    inked = n // 7
    ink = torch.cat([scribbles(inked, gen), shapes(inked, gen)]).reshape(2 * inked, 1, side, side)
    n -= 2 * inked
    kinds = torch.arange(n) % 5
    u = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    out = torch.empty(n, 1, side, side)
    shape = (1, side, side)
    for i, kind in enumerate(kinds.tolist()):
        if kind == 0:    # Gaussian noise around a random grey
            img = u(1) * 0.6 + 0.2 + (u(1) * 0.45 + 0.05) * torch.randn(shape, generator=gen)
        elif kind == 1:  # uniform noise of random contrast
            img = u(*shape) * (u(1) * 0.7 + 0.3)
        elif kind == 2:  # flat grey with a little noise (what an untrained G draws)
            img = u(1) + 0.03 * torch.randn(shape, generator=gen)
        elif kind == 3:  # smooth blobs
            img = F.interpolate(u(1, 1, 7, 7), size=(side, side), mode="bilinear", align_corners=False)[0]
        else:            # salt and pepper
            img = (u(*shape) < u(1) * 0.45 + 0.05).float()
        out[i] = img.clamp(0, 1)
    return torch.cat([out, ink])


def noisy_half(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Speckle and Gaussian noise on a random half of the images (they keep their labels)."""
    n, dev = len(x), x.device
    u = lambda *shape: torch.rand(*shape, generator=gen).to(dev)  # noqa: E731
    speckled = torch.where(u(*x.shape) < u(n, 1, 1, 1) * CLF_NOISE, u(*x.shape), x)
    noised = (speckled + u(n, 1, 1, 1) * CLF_NOISE * torch.randn(x.shape, generator=gen).to(dev)).clamp(0, 1)
    return torch.where(u(n, 1, 1, 1) < 0.5, noised, x)


def train_classifier(clf: Classifier, ds: Dataset, device: torch.device) -> float:
    """Train on the classifier split plus junk, with a fixed seed; return held-out accuracy.

    The accuracy is over the held-out data only: a real image called "not data" is an error.
    """
    torch.manual_seed(CLF_SEED)
    gen = torch.Generator().manual_seed(CLF_SEED)
    junk_label = ds.num_classes
    clf.to(device).train()
    x = as_images(uint8_to_unit(ds.clf_images)).to(device)
    y = ds.clf_labels.to(device)
    opt = torch.optim.Adam(clf.parameters(), lr=CLF_MAX_LR / 10)
    batches = -(-len(x) // CLF_BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, CLF_MAX_LR, total_steps=CLF_EPOCHS * batches)
    seed = torch.tensor([CLF_SEED])
    for epoch in range(CLF_EPOCHS):
        perm = rng.permutation(seed, (rng.STREAM_DATA, epoch), len(x))[0].to(device)
        for idx in perm.split(CLF_BATCH):
            dx, dy = torch.randint(-CLF_SHIFT, CLF_SHIFT + 1, (2,)).tolist()
            digits = noisy_half(torch.roll(x[idx], (dx, dy), (2, 3)), gen)
            xb = torch.cat([digits, junk_images(JUNK_PER_BATCH, gen).to(device)])
            yb = torch.cat([y[idx], torch.full((JUNK_PER_BATCH,), junk_label, device=device)])
            opt.zero_grad()
            F.cross_entropy(clf(xb), yb).backward()
            opt.step()
            sched.step()
    clf.eval()
    with torch.no_grad():
        xh = as_images(uint8_to_unit(ds.held_out_images)).to(device)
        pred = torch.cat([clf(c).argmax(1) for c in xh.split(1000)])
    return float((pred.cpu() == ds.held_out_labels).double().mean())
