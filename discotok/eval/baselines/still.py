"""Still-image codecs through Pillow: per image, the quality whose payload is nearest a target.

The payload is the file minus the container's header (each codec's ``header_bytes`` parses its
format's markers). The search targets the payload: the header is a near-constant per quality
that a store of many images at one setting could share, and the report gives both figures.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from discotok.eval.baselines.contract import Coded, Point, nearest_setting


CURVE = (0.5, 1.0, 2.0)  # points per tokenizer rate, as factors of it


class PillowCodec:
    """A lossy Pillow format at a quality in ``qualities`` (low..high), extra save options ``options``,
    and a parser ``header_bytes(data)`` of the container's header."""

    setting_name = "quality"

    def __init__(self, name: str, title: str, pil_format: str, qualities: tuple[int, int], options: dict,
                 header_bytes: Callable[[bytes], int], header_rule: str) -> None:
        self.name, self.title, self.pil_format, self.qualities = name, title, pil_format, qualities
        self.options, self.header_bytes, self.header_rule = options, header_bytes, header_rule

    def encode(self, item: np.ndarray, quality: int) -> bytes:
        """``item`` (H, W, 3) uint8 as a file of this format at ``quality``."""
        buffer = io.BytesIO()
        Image.fromarray(item).save(buffer, format=self.pil_format, quality=quality, **self.options)
        return buffer.getvalue()

    def _coded(self, data: bytes, quality: int) -> Coded:
        header = self.header_bytes(data)
        with Image.open(io.BytesIO(data)) as img:
            decoded = np.asarray(img.convert("RGB"))
        return Coded(decoded, 8.0 * (len(data) - header), 8.0 * header, float(quality))

    def points(self, targets: Sequence[float]) -> list[Point]:
        """Every target, and half and twice each, so the codec draws a curve around every tokenizer point."""
        around = {round(t * f, 3) for t in targets for f in CURVE}
        return [Point(f"{self.title} near {t:,.0f} bits", float(t)) for t in sorted(around)]

    def code(self, item: np.ndarray, point: Point) -> Coded:
        files: dict[int, bytes] = {}

        def payload_bits(quality: int) -> float:
            if quality not in files:
                files[quality] = self.encode(item, quality)
            return 8.0 * (len(files[quality]) - self.header_bytes(files[quality]))

        quality = nearest_setting(payload_bits, *self.qualities, point.target)
        return self._coded(files[quality], quality)

    def lowest(self, item: np.ndarray) -> Coded:
        return self._coded(self.encode(item, self.qualities[0]), self.qualities[0])

    def describe(self) -> str:
        import PIL

        low, high = self.qualities
        return (f"Pillow {PIL.__version__} {self.pil_format}, options {self.options}; per image the quality in "
                f"{low}..{high} whose payload is nearest the target (binary search); targets: each tokenizer "
                f"point's bits per image times {', '.join(f'{f:g}' for f in CURVE)}; "
                f"header: {self.header_rule}")
