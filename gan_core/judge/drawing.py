"""Synthetic images the judge's checks and its classifier are made of: blur and bold strokes, pen
scribbles of straight segments, smooth grey blobs and filled ellipses (the first junk family: the
calibration's mixtures and the classifier's "not data" examples), and arcs and lumps (the second junk
family, made another way and used only to test the judge: nothing is tuned or trained on it)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of [N, 784] images (separable kernel, zero padding like an empty border)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    img = x.reshape(-1, 1, 28, 28)
    img = F.conv2d(img, k.view(1, 1, 1, -1), padding=(0, radius))
    img = F.conv2d(img, k.view(1, 1, -1, 1), padding=(radius, 0))
    return img.reshape(len(x), -1)


def bold(x: torch.Tensor) -> torch.Tensor:
    """Strokes thickened by one pixel (a 3x3 max filter)."""
    return F.max_pool2d(x.reshape(-1, 1, 28, 28), 3, stride=1, padding=1).reshape(len(x), -1)


def scribbles(n: int, gen: torch.Generator) -> torch.Tensor:
    """n images [n, 784] of 2-4 random strokes of a pen about as wide as MNIST's: digit-like ink, no digit."""
    strokes = 3
    pts = 6 + 16 * torch.rand(n, strokes + 1, 2, generator=gen)          # control points inside the box
    steps = torch.linspace(0, 1, 24)
    seg = pts[:, :-1, None, :] + (pts[:, 1:, None, :] - pts[:, :-1, None, :]) * steps[None, None, :, None]
    used = (torch.arange(strokes)[None, :] < torch.randint(2, strokes + 1, (n, 1), generator=gen))
    seg = seg.reshape(n, -1, 2)
    mask = used[:, :, None].expand(n, strokes, len(steps)).reshape(n, -1)
    grid = torch.arange(28, dtype=torch.float32)
    width = 2 * 0.9 ** 2
    # The pen is a Gaussian, so its ink at (y, x) is a row factor times a column factor, and the image is
    # the darkest point's ink: a running maximum over the points, instead of exp over a [n, P, 28, 28]
    # tensor (450 MB at n = 2000, 6.5x the time); the same images to a float32 rounding (<= 1.2e-7).
    row = torch.exp(-(grid[None, None, :] - seg[:, :, 0:1]) ** 2 / width) * mask[:, :, None]  # [n, P, 28]
    col = torch.exp(-(grid[None, None, :] - seg[:, :, 1:2]) ** 2 / width)
    ink = torch.zeros(n, 28, 28)
    for p in range(seg.shape[1]):
        torch.maximum(ink, row[:, p, :, None] * col[:, p, None, :], out=ink)
    return ink.clamp(0, 1).reshape(n, -1)


def arcs(n: int, gen: torch.Generator) -> torch.Tensor:
    """n images [n, 784] of 2-3 open circular arcs, crescents and hooks drawn with a pen of random width: round
    strokes, unlike `scribbles`' straight segments, and never closed into a loop that reads as a 0 (the second
    junk family: never used for tuning)."""
    grid = torch.arange(28, dtype=torch.float32)
    ink = torch.zeros(n, 28, 28)
    for _ in range(3):
        on = torch.rand(n, generator=gen) < 0.8
        centre = 6 + 16 * torch.rand(n, 2, generator=gen)
        radius = 3 + 7 * torch.rand(n, generator=gen)
        start = 2 * math.pi * torch.rand(n, generator=gen)
        sweep = math.pi * (0.3 + 0.8 * torch.rand(n, generator=gen))
        width = (0.6 + 1.2 * torch.rand(n, generator=gen)) ** 2 * 2
        for t in torch.linspace(0, 1, 40):
            angle = start + sweep * t
            y = centre[:, 0] + radius * torch.sin(angle)
            x = centre[:, 1] + radius * torch.cos(angle)
            dot = torch.exp(-((grid[None, :, None] - y[:, None, None]) ** 2 + (grid[None, None, :] - x[:, None, None]) ** 2)
                            / width[:, None, None])
            torch.maximum(ink, dot * on[:, None, None], out=ink)
    return ink.clamp(0, 1).reshape(n, -1)


def lumps(n: int, gen: torch.Generator) -> torch.Tensor:
    """n images [n, 784] of white lumps on black: coarse noise thresholded into solid shapes with soft edges,
    ink-like but shapeless (the second junk family: never used for tuning)."""
    coarse = torch.rand(n, 1, 7, 7, generator=gen)
    smooth = F.interpolate(coarse, size=(20, 20), mode="bicubic", align_corners=False)
    shapes = torch.sigmoid((smooth - 0.62) * 30)
    img = F.pad(shapes, (4, 4, 4, 4))
    return blur(img.reshape(n, -1), 0.7).clamp(0, 1)


def blobs(n: int, gen: torch.Generator) -> torch.Tensor:
    """n smooth grey blobs [n, 784], each different."""
    coarse = torch.rand(n, 1, 5, 5, generator=gen)
    img = F.interpolate(coarse, size=(28, 28), mode="bicubic", align_corners=False).clamp(0, 1)
    return img.reshape(n, -1)


def shapes(n: int, gen: torch.Generator) -> torch.Tensor:
    """n images [n, 784] of one to three filled ellipses of random size, elongation and angle, white on black:
    solid ink with no stroke (first junk family, for the classifier's "not data")."""
    yy, xx = torch.meshgrid(torch.arange(28, dtype=torch.float32), torch.arange(28, dtype=torch.float32), indexing="ij")
    ink = torch.zeros(n, 28, 28)
    for k in range(3):
        on = (torch.rand(n, generator=gen) < (1.0 if k == 0 else 0.5)).float()
        cy, cx = (6 + 16 * torch.rand(n, 2, generator=gen)).unbind(1)
        a = 2 + 7 * torch.rand(n, generator=gen)
        b = a * (0.3 + 0.7 * torch.rand(n, generator=gen))
        t = math.pi * torch.rand(n, generator=gen)
        dy, dx = yy[None] - cy[:, None, None], xx[None] - cx[:, None, None]
        u = dx * torch.cos(t)[:, None, None] + dy * torch.sin(t)[:, None, None]
        v = -dx * torch.sin(t)[:, None, None] + dy * torch.cos(t)[:, None, None]
        inside = torch.sigmoid(4 * (1 - (u / a[:, None, None]) ** 2 - (v / b[:, None, None]) ** 2))
        torch.maximum(ink, inside * on[:, None, None], out=ink)
    return ink.clamp(0, 1).reshape(n, -1)
