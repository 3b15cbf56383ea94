"""Lossy WebP through Pillow (libwebp), with the header parsed from its RIFF chunks."""

from __future__ import annotations

from discotok.eval.baselines.still import PillowCodec

# A VP8 key frame opens with a 3-byte frame tag and 7 bytes of start code and dimensions.
VP8_FRAME_HEADER = 10


def webp_header_bytes(data: bytes) -> int:
    """Bytes of a lossy WebP file besides the VP8 bitstream after its frame header: the RIFF/WEBP
    header, every chunk header and any other chunk, the VP8 frame header and padding."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("not a WebP file: no RIFF/WEBP header")
    i = 12
    while i + 8 <= len(data):
        fourcc, size = data[i : i + 4], int.from_bytes(data[i + 4 : i + 8], "little")
        if fourcc == b"VP8 ":
            return len(data) - (size - VP8_FRAME_HEADER)
        i += 8 + size + (size & 1)
    raise ValueError("WebP file: no lossy 'VP8 ' chunk (lossless or animated files are not lossy baselines)")


def webp() -> PillowCodec:
    """Lossy WebP at method 6 (slowest, smallest); quality 0..100."""
    return PillowCodec("webp", "WebP", "WEBP", (0, 100), {"method": 6}, webp_header_bytes,
                       "the RIFF/WEBP header, chunk headers and the 10-byte VP8 key-frame header")
