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


def dead_leaves(size: Sequence[int], shapes: int = 120, min_radius: float = 0.03, max_radius: float = 0.6) -> Image.Image:
    """A dead-leaves image of ``size`` (height, width): ``shapes`` ellipses and triangles of random
    colours, radii (as a fraction of the shorter side) drawn from the scale-invariant density
    ``r^-3`` on ``[min_radius, max_radius]``, drawn at twice the size, softened and reduced.
    Every random number is drawn in one call per kind, before drawing."""
    h, w = (int(s) for s in size)
    scale = 2
    H, W = h * scale, w * scale
    side = min(H, W)
    lo, hi = min_radius**-2, max_radius**-2
    u = torch.rand(shapes, 5)
    radius = side * (hi + (lo - hi) * u[:, 0]) ** -0.5
    cx, cy = (u[:, 1] * (W + 2 * radius) - radius).tolist(), (u[:, 2] * (H + 2 * radius) - radius).tolist()
    ellipse, aspect = (u[:, 3] < 0.5).tolist(), (0.5 + 1.5 * u[:, 4]).tolist()
    angles = torch.rand(shapes, 3) * 6.2832
    corners = torch.stack([angles.cos(), angles.sin()], dim=-1).mul(radius[:, None, None]).tolist()
    colours = [tuple(c) for c in torch.randint(256, (shapes + 1, 3)).tolist()]
    blur = float(torch.rand(())) * 1.5
    img = Image.new("RGB", (W, H), colours[-1])
    draw = ImageDraw.Draw(img)
    for i, r in enumerate(radius.tolist()):
        if ellipse[i]:
            a = aspect[i]
            draw.ellipse((cx[i] - r * a, cy[i] - r / a, cx[i] + r * a, cy[i] + r / a), fill=colours[i])
        else:
            draw.polygon([(cx[i] + dx, cy[i] + dy) for dx, dy in corners[i]], fill=colours[i])
    img = img.filter(ImageFilter.GaussianBlur(blur))
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
