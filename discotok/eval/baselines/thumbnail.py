"""The thumbnail baseline: an RGB thumbnail at 8 bits per channel, box-downsampled and bicubic-upsampled.

A thumbnail of h x w pixels costs exactly ``24 * h * w`` bits and has no header. For a tokenizer
rate of b bits per image the points are the thumbnail whose cost is nearest b and the next
smaller and larger ones, so the codec has a curve around every tokenizer point. Thumbnails keep
the image's aspect ratio: h = 1..H, w = max(1, round(h * W / H)).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from discotok.eval.baselines.contract import Coded, Point

BITS_PER_PIXEL = 24


def thumbnail_bits(h: int, w: int) -> int:
    """Bits of an h x w RGB thumbnail at 8 bits per channel."""
    return BITS_PER_PIXEL * h * w


class Thumbnail:
    """Box down to h x w, bicubic back up to the image size (Pillow)."""

    name = "thumbnail"
    title = "thumbnail"
    setting_name = None

    def __init__(self, image_size: Sequence[int]) -> None:
        self.height, self.width = (int(s) for s in image_size)
        sizes = {(h, max(1, round(h * self.width / self.height))) for h in range(1, self.height + 1)}
        self.sizes = sorted(sizes, key=lambda s: thumbnail_bits(*s))

    def points(self, targets: Sequence[float]) -> list[Point]:
        """The nearest thumbnail to each target and its smaller and larger neighbours."""
        costs = np.array([thumbnail_bits(*s) for s in self.sizes])
        chosen: set[int] = set()
        for target in targets:
            i = int(np.argmin(np.abs(costs - target)))
            chosen |= {j for j in (i - 1, i, i + 1) if 0 <= j < len(self.sizes)}
        return [self._point(self.sizes[i]) for i in sorted(chosen)]

    @staticmethod
    def _point(size: tuple[int, int]) -> Point:
        h, w = size
        return Point(f"thumbnail {h}x{w}", float(thumbnail_bits(h, w)), {"size": (h, w)})

    def code(self, item: np.ndarray, point: Point) -> Coded:
        h, w = point.settings["size"]
        small = Image.fromarray(item).resize((w, h), Image.Resampling.BOX)
        up = small.resize((item.shape[1], item.shape[0]), Image.Resampling.BICUBIC)
        return Coded(np.asarray(up), float(thumbnail_bits(h, w)))

    def lowest(self, item: np.ndarray) -> Coded:
        return self.code(item, self._point(self.sizes[0]))

    def describe(self) -> str:
        return (f"RGB thumbnail h x w at 8 bits per channel ({BITS_PER_PIXEL}*h*w bits, no header), Pillow "
                "Image.BOX down and Image.BICUBIC up; per tokenizer rate the thumbnail nearest it and the next "
                "smaller and larger ones")
