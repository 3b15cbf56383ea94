"""JPEG through Pillow (libjpeg), with the header parsed from its markers."""

from __future__ import annotations

from discotok.eval.baselines.still import PillowCodec

SOI, SOS, EOI = 0xD8, 0xDA, 0xD9


def jpeg_header_bytes(data: bytes) -> int:
    """Bytes of a baseline JPEG that are not entropy-coded data: every marker segment from SOI to the
    end of the (single) SOS segment header, plus the closing EOI marker."""
    if data[:2] != bytes([0xFF, SOI]):
        raise ValueError("not a JPEG stream: it does not start with the SOI marker")
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"JPEG stream: expected a marker at byte {i}, got 0x{data[i]:02x}")
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        i += 2 + length
        if marker == SOS:
            return i + (2 if data[-2:] == bytes([0xFF, EOI]) else 0)
    raise ValueError("JPEG stream: no SOS marker before the end of the data")


def jpeg() -> PillowCodec:
    """Baseline JPEG, optimised Huffman tables, Pillow's default 4:2:0 chroma subsampling; quality 1..100."""
    return PillowCodec("jpeg", "JPEG", "JPEG", (1, 100), {"optimize": True}, jpeg_header_bytes,
                       "the marker segments from SOI to the end of the SOS segment header, plus EOI "
                       "(quantisation and Huffman tables, frame header, JFIF APP0)")
