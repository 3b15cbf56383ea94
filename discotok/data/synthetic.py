"""Synthetic training images: colour for data that has too little of it.

``dead_leaves`` draws occluding shapes whose sizes follow a power law (the "dead leaves" model of
natural images: edges, occlusions and flat regions at every scale) in colours drawn from the
whole RGB cube, so a tokenizer trained on a few photos still meets every hue. ``GradientMap``
gives grey photos colours by mapping their luminance through a random palette. Both draw from
torch's global generator, so under ``sample_rng`` a sample is a pure function of its index.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image, ImageChops, ImageDraw, ImageFilter


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def _colour() -> tuple[int, int, int]:
    return tuple(int(c) for c in torch.randint(256, (3,)))


def dead_leaves(size: Sequence[int], shapes: int = 120, min_radius: float = 0.03, max_radius: float = 0.6) -> Image.Image:
    """A dead-leaves image of ``size`` (height, width): ``shapes`` ellipses and triangles of random
    colours, radii (as a fraction of the shorter side) drawn from the scale-invariant density
    ``r^-3`` on ``[min_radius, max_radius]``, drawn at twice the size, softened and reduced."""
    h, w = (int(s) for s in size)
    scale = 2
    H, W = h * scale, w * scale
    img = Image.new("RGB", (W, H), _colour())
    draw = ImageDraw.Draw(img)
    side = min(H, W)
    lo, hi = min_radius ** -2, max_radius ** -2
    for _ in range(shapes):
        r = side * _uniform(hi, lo) ** -0.5
        cx, cy = _uniform(-r, W + r), _uniform(-r, H + r)
        if float(torch.rand(())) < 0.5:
            aspect = _uniform(0.5, 2.0)
            draw.ellipse((cx - r * aspect, cy - r / aspect, cx + r * aspect, cy + r / aspect), fill=_colour())
        else:
            angles = torch.rand(3) * 6.2832
            draw.polygon([(cx + r * float(a.cos()), cy + r * float(a.sin())) for a in angles], fill=_colour())
    img = img.filter(ImageFilter.GaussianBlur(_uniform(0.0, 1.5)))
    return img.resize((w, h), Image.Resampling.BOX)


class GradientMap:
    """With chance ``p``, a grey image (all channels equal) becomes colour: its luminance is
    mapped through a palette of 2 to 4 random colours, linearly between them. Colour images pass."""

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, img: Image.Image) -> Image.Image:
        if self.p <= 0 or float(torch.rand(())) >= self.p:
            return img
        rgb = img.convert("RGB")
        r, g, b = rgb.split()
        if ImageChops.difference(r, g).getbbox() or ImageChops.difference(r, b).getbbox():
            return img
        stops = int(torch.randint(2, 5, ()))
        palette = torch.randint(256, (stops, 3)).float()
        levels = torch.linspace(0, stops - 1, 256)
        low = levels.floor().long().clamp(max=stops - 2)
        frac = (levels - low).unsqueeze(1)
        lut = (palette[low] * (1 - frac) + palette[low + 1] * frac).round().byte()
        table = [int(v) for channel in lut.T for v in channel]
        return Image.merge("RGB", (r, r, r)).point(table)
