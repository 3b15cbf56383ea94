"""EnCodec 48 kHz's segmented coding, exactly as the ``encodec`` package's ``EncodecModel.encode`` / ``decode``
(``segment=1.0``, ``overlap=0.01``, ``normalize=True``), on a tokenizer converted by ``discotok convert encodec``.

The publisher's 48 kHz model codes 1-second segments at a stride of 0.99 s; each segment is divided by its
loudness ``scale`` (1e-8 + the RMS of its channels' mean) before it is encoded, and the decoded segment is
multiplied by it again; the segments are then overlap-added with linear fades. The scales are floats the ids
do not hold, so this is a second output (``Segments.scales``), not a ``(B, frames, depth)`` id tensor: the
``Tokenizer``'s own ``encode`` / ``decode`` (and ``discotok encode`` / ``decode``) code a whole clip as one
segment without scales.

    segments = encode_segments(tok, x)            # x (B, 2, T) at 48 kHz
    segments.ids                                  # one (B, frames_k, depth) tensor per segment
    segments.scales                               # (B, segments) float
    audio = decode_segments(tok, segments)        # (B, 2, T') with T' >= T (48000 -> 48160), as the reference
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from discotok.layout import Layout
from discotok.nn.modes import eval_mode
from discotok.tokenizers.tokenizer import Tokenizer


@dataclass
class Segments:
    """The ids of each segment (B, frames_k, depth), their loudness scales (B, segments) (None: not normalised)
    and the stride between segment starts, in samples."""

    ids: list[Tensor]
    scales: Tensor | None
    stride: int


def segment_stride(tok: Tokenizer, seconds: float, overlap: float) -> tuple[int, int]:
    """Samples per segment and between segment starts at the tokenizer's rate (EnCodec's ``segment_length`` and
    ``segment_stride``)."""
    length = int(seconds * tok.modality.sample_rate)
    return length, max(1, int((1 - overlap) * length))


def loudness(x: Tensor) -> Tensor:
    """EnCodec's scale of a segment (B, C, T): 1e-8 + the RMS of the mean of its channels, (B, 1, 1)."""
    return 1e-8 + x.mean(dim=1, keepdim=True).pow(2).mean(dim=2, keepdim=True).sqrt()


@torch.no_grad()
def encode_segments(tok: Tokenizer, x: Tensor, depth: int | None = None, seconds: float = 1.0, overlap: float = 0.01,
                    normalize: bool = True) -> Segments:
    """Waveforms (B, C, T), all T samples valid, coded segment by segment (``seconds`` long, ``overlap`` of a
    segment shared with the next), each divided by its loudness scale first (``normalize``); ``depth`` as
    ``Tokenizer.encode``'s."""
    length, stride = segment_stride(tok, seconds, overlap)
    ids, scales = [], []
    for start in range(0, x.shape[-1], stride):
        segment = x[..., start : start + length]
        scale = loudness(segment) if normalize else None
        ids.append(tok.encode(segment if scale is None else segment / scale, depth=depth))
        scales.append(scale)
    return Segments(ids, None if not normalize else torch.cat(scales, dim=1).flatten(1), stride)


def overlap_add(frames: list[Tensor], stride: int) -> Tensor:
    """EnCodec's ``_linear_overlap_add``: segments (B, C, n_k) starting every ``stride`` samples, summed with
    triangular weights (the first segment's length) and divided by the sum of the weights."""
    size = frames[0].shape[-1]
    t = torch.linspace(0, 1, size + 2, device=frames[0].device, dtype=frames[0].dtype)[1:-1]
    weight = 0.5 - (t - 0.5).abs()
    total = stride * (len(frames) - 1) + frames[-1].shape[-1]
    out = torch.zeros(*frames[0].shape[:-1], total, device=t.device, dtype=t.dtype)
    weights = torch.zeros(total, device=t.device, dtype=t.dtype)
    for k, frame in enumerate(frames):
        n = frame.shape[-1]
        out[..., k * stride : k * stride + n] += weight[:n] * frame
        weights[k * stride : k * stride + n] += weight[:n]
    return out / weights


@torch.no_grad()
def decode_segments(tok: Tokenizer, segments: Segments) -> Tensor:
    """The waveforms (B, C, stride * (segments - 1) + the last segment's frames * hop) of ``segments``: each
    segment decoded, multiplied by its scale and overlap-added. Not clamped: a normalised segment decodes at unit
    loudness, whose peaks may pass 1 before the scale brings it back."""
    if not segments.ids:
        raise ValueError("no segments to decode")
    frames = []
    with eval_mode(tok):
        for k, ids in enumerate(segments.ids):
            tok.quantizer.check_ids(ids)
            z_q = tok.quantizer.ids_to_codes(ids)
            out = tok.decoder(z_q, Layout("frames", (ids.shape[1],)))
            frames.append(out if segments.scales is None else out * segments.scales[:, k, None, None])
    return overlap_add(frames, segments.stride)
