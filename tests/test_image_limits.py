"""Image loading at bounded memory: a pixel limit checked from the header, 16-bit conversion without wide temporaries."""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from discotok.data.images import ImageLoadError, load_image


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def declared_png(path: Path, width: int, height: int) -> Path:
    """A tiny 16-bit grayscale PNG whose header declares ``width`` x ``height`` (only a few rows of data)."""
    rows = zlib.compress(b"".join(b"\0" + bytes(2 * width) for _ in range(4)))
    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b""))
    return path


def test_huge_declared_size_is_refused_before_decoding(tmp_path: Path) -> None:
    """12000 x 12000 is under Pillow's own error threshold (only a warning there) but over ours."""
    path = declared_png(tmp_path / "bomb.png", 12000, 12000)
    assert path.stat().st_size < 100_000
    with pytest.raises(ImageLoadError, match=r"bomb\.png: image of 12000x12000 pixels .* over the limit of 67108864"):
        load_image(path)
    with pytest.raises(ImageLoadError, match=r"bomb\.png: image of 12000x12000 pixels .* over the limit of 1000000"):
        load_image(path, max_pixels=1_000_000)


def test_near_black_16_bit_png_stays_near_black(tmp_path: Path) -> None:
    values = np.linspace(0, 1000, 64 * 64).reshape(64, 64).astype(np.uint16)  # at most 1.5 % of the 16-bit range
    Image.fromarray(values).save(tmp_path / "dark.png")
    rgb = np.asarray(load_image(tmp_path / "dark.png"))
    expected = np.round(values.astype(np.float64) * 255 / 65535)
    assert rgb.shape == (64, 64, 3)
    np.testing.assert_array_equal(rgb[..., 0], expected)
    assert rgb.max() == 4


def test_16_bit_conversion_makes_no_wide_temporaries(tmp_path: Path) -> None:
    side = 1500
    values = (np.arange(side * side, dtype=np.uint32) % 65536).astype(np.uint16).reshape(side, side)
    Image.fromarray(values).save(tmp_path / "wide.png")
    tracemalloc.start()
    try:
        rgb = load_image(tmp_path / "wide.png")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rgb.size == (side, side)
    assert peak < 6 * side * side  # float64 copies would take 16 bytes per pixel
