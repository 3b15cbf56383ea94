"""EnCodec 48 kHz's segmented coding (1-s segments at a stride of 0.99 s, loudness scales, overlap-add) on a tokenizer
converted by ``discotok convert encodec`` or ``transformers``: ``discotok.modalities.audio_segments``, named here
too. ``discotok encode`` / ``decode`` code files this way when the tokenizer's config holds ``segments``.

    segments = encode_segments(tok, x)            # x (B, 2, T) at 48 kHz
    segments.ids                                  # one (B, frames_k, depth) tensor per segment
    segments.scales                               # (B, segments) float
    audio = decode_segments(tok, segments)        # (B, 2, T') with T' >= T (48000 -> 48160), as the reference
"""

from discotok.modalities.audio_segments import Segments, decode_segments, encode_segments, loudness, overlap_add

__all__ = ["Segments", "decode_segments", "encode_segments", "loudness", "overlap_add"]
