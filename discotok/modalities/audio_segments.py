"""Segmented coding of audio with loudness scales, as EnCodec 48 kHz codes a clip (the ``encodec`` package's
``EncodecModel.encode`` / ``decode`` with ``segment=1.0``, ``overlap=0.01``, ``normalize=True``, and transformers'
``EncodecModel`` with ``chunk_length_s=1.0``, ``overlap=0.01``, ``normalize=True``).

A tokenizer whose config holds ``"segments": {"seconds": 1.0, "overlap": 0.01, "normalize": true}`` (plain values;
``seconds: null`` codes the whole clip as one segment) codes a file this way in ``discotok encode`` / ``decode``:

* a clip of T samples is cut into segments of ``L = int(seconds * sample_rate)`` samples starting every
  ``S = max(1, int((1 - overlap) * L))`` samples (0, S, 2S, ... < T; the last one shorter);
* with ``normalize``, each segment is divided by its loudness ``scale`` (1e-8 + the RMS of the mean of its
  channels) and encoded; its ids are ``num_frames(its length)`` frames;
* an item's ids are its segments' ids one after another (``(frames, depth)``, frames = the sum), and its scales
  ``(segments,)`` are side information stored beside them;
* decoding decodes each segment, multiplies it by its scale and overlap-adds the segments with linear fades
  (``S * (segments - 1)`` + the last segment's frames x hop samples, then cut to the clip's length).

Clips of a zero-padded batch are coded as they are alone: the segments of every item go through the tokenizer in
batches of one length (the full segments together, each short last one alone or with others of its length).
``encode_segments`` / ``decode_segments`` give the same coding per segment (ids ``(B, frames_k, depth)`` per
segment, scales ``(B, segments)``) for a batch of clips of one length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from discotok.layout import Layout
from discotok.nn.modes import eval_mode
from discotok.nn.waveform import check_audio_batch, check_lengths
from discotok.quantizers.base import NonFiniteError
from discotok.registry import ConfigError

if TYPE_CHECKING:
    from discotok.tokenizers.tokenizer import Tokenizer

SEGMENT_KEYS = ("seconds", "overlap", "normalize")


@dataclass(frozen=True)
class Segmenting:
    """How clips are cut: ``seconds`` per segment (None: the whole clip), the ``overlap`` fraction of a segment
    shared with the next, and whether each segment is divided by its loudness scale (``normalize``)."""

    seconds: float | None = 1.0
    overlap: float = 0.01
    normalize: bool = True

    @classmethod
    def from_config(cls, value: Any) -> "Segmenting":
        """The config's ``segments`` object, checked; ``ConfigError`` saying what is wrong otherwise."""
        if not isinstance(value, dict) or set(value) != set(SEGMENT_KEYS):
            raise ConfigError(f"config: 'segments' must be an object with the keys {list(SEGMENT_KEYS)}, got {value!r}")
        seconds, overlap, normalize = (value[k] for k in SEGMENT_KEYS)
        number = (int, float)
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, number) or not seconds > 0):
            raise ConfigError(f"config: segments.seconds must be a positive number or null, got {seconds!r}")
        if isinstance(overlap, bool) or not isinstance(overlap, number) or not 0 <= overlap < 1:
            raise ConfigError(f"config: segments.overlap must be a number in [0, 1), got {overlap!r}")
        if not isinstance(normalize, bool):
            raise ConfigError(f"config: segments.normalize must be true or false, got {normalize!r}")
        return cls(None if seconds is None else float(seconds), float(overlap), normalize)

    def to_config(self) -> dict:
        return {"seconds": self.seconds, "overlap": self.overlap, "normalize": self.normalize}

    def spans(self, samples: int, sample_rate: int) -> list[tuple[int, int]]:
        """(start, stop) of each segment of a clip of ``samples`` samples."""
        length, stride = self.length_stride(sample_rate, samples)
        return [(start, min(start + length, samples)) for start in range(0, samples, stride)]

    def length_stride(self, sample_rate: int, samples: int) -> tuple[int, int]:
        """Samples per segment and between segment starts (EnCodec's ``segment_length`` and ``segment_stride``);
        a clip of ``samples`` is one segment when ``seconds`` is None."""
        if self.seconds is None:
            return samples, samples
        length = int(self.seconds * sample_rate)
        return length, max(1, int((1 - self.overlap) * length))


@dataclass
class ClipCodes:
    """Per item of a batch: its segments' ids, one tensor ``(frames_k[, depth])`` per segment, and its scales
    ``(segments,)`` float32 (None: not normalised)."""

    ids: list[list[Tensor]]
    scales: list[Tensor] | None


def loudness(x: Tensor) -> Tensor:
    """EnCodec's scale of a segment (B, C, T): 1e-8 + the RMS of the mean of its channels, (B, 1, 1)."""
    return 1e-8 + x.contiguous().mean(dim=1, keepdim=True).pow(2).mean(dim=2, keepdim=True).sqrt()


def by_length(lengths: list[int]) -> dict[int, list[int]]:
    """Indices grouped by their length, in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(n, []).append(i)
    return groups


@torch.no_grad()
def encode_clips(tok: "Tokenizer", segmenting: Segmenting, x: Tensor, lengths: Tensor | None = None,
                 **options: Any) -> ClipCodes:
    """Waveforms (B, C, T) (with ``lengths``: a zero-padded batch) coded segment by segment: the segments of every
    item, grouped by length, each group encoded as one batch (``options``: ``Tokenizer.encode``'s, such as
    ``depth``); a segment's ids are what it gets alone. An item whose input or latents are not finite raises
    ``NonFiniteError`` naming the item."""
    check_audio_batch(x, tok.modality.channels)
    rate = tok.modality.sample_rate
    sizes = [x.shape[-1]] * x.shape[0] if lengths is None else check_lengths(lengths, x.shape[0], x.shape[-1]).tolist()
    owner, pieces, scales = [], [], []
    for b, size in enumerate(sizes):
        item = []
        for start, stop in segmenting.spans(size, rate):
            piece = x[b : b + 1, :, start:stop]
            scale = loudness(piece) if segmenting.normalize else None
            pieces.append((piece if scale is None else piece / scale)[0])
            item.append(scale)
            owner.append(b)
        scales.append(item)
    ids: list[Tensor] = [pieces[0]] * len(pieces)
    for members in by_length([p.shape[-1] for p in pieces]).values():
        try:
            coded = tok.encode(torch.stack([pieces[i] for i in members]), **options)
        except NonFiniteError as err:
            raise NonFiniteError(sorted({owner[members[j]] for j in err.items}), err.where) from None
        for j, i in enumerate(members):
            ids[i] = coded[j]
    out: list[list[Tensor]] = [[] for _ in sizes]
    for i, b in enumerate(owner):
        out[b].append(ids[i])
    kept = [torch.cat([s.reshape(1) for s in item]).float() for item in scales] if segmenting.normalize else None
    return ClipCodes(out, kept)


@torch.no_grad()
def decode_clips(tok: "Tokenizer", codes: ClipCodes, stride: int) -> list[Tensor]:
    """The waveforms (C, n_b) of coded clips: every segment decoded (those of one frame count as one batch),
    multiplied by its scale and overlap-added with linear fades, segments starting every ``stride`` samples. Not
    clamped: a normalised segment decodes at unit loudness, whose peaks may pass 1 before the scale brings it
    back."""
    flat = [ids for item in codes.ids for ids in item]
    if not flat:
        raise ValueError("no segments to decode")
    device = next(tok.parameters()).device
    decoded: list[Tensor] = [flat[0]] * len(flat)
    with eval_mode(tok):
        for frames, members in by_length([ids.shape[0] for ids in flat]).items():
            batch = torch.stack([flat[i] for i in members]).to(device)
            tok.quantizer.check_ids(batch)
            out = tok.decoder(tok.quantizer.ids_to_codes(batch), Layout("frames", (frames,)))
            for j, i in enumerate(members):
                decoded[i] = out[j]
    waves, i = [], 0
    for b, item in enumerate(codes.ids):
        pieces = []
        for k in range(len(item)):
            pieces.append(decoded[i] if codes.scales is None else decoded[i] * codes.scales[b][k].to(decoded[i]))
            i += 1
        waves.append(overlap_add(pieces, stride))
    return waves


def overlap_add(pieces: list[Tensor], stride: int) -> Tensor:
    """EnCodec's ``_linear_overlap_add``: segments (..., n_k) starting every ``stride`` samples, summed with
    triangular weights (the first segment's length) and divided by the sum of the weights. The output reaches the
    end of the segment that ends last: EnCodec's length (the last segment's end) wherever EnCodec runs; where the
    last segment is short enough to end before the first (at 48 kHz, hop 320: a clip of 47681 to 47840 samples
    decodes its first segment to 48000 samples and its second to 320 from 47520), EnCodec fails, and this keeps
    the first segment whole. One segment is returned as it is."""
    if len(pieces) == 1:
        return pieces[0]
    size = pieces[0].shape[-1]
    t = torch.linspace(0, 1, size + 2, device=pieces[0].device, dtype=pieces[0].dtype)[1:-1]
    weight = 0.5 - (t - 0.5).abs()
    total = max(k * stride + piece.shape[-1] for k, piece in enumerate(pieces))
    out = torch.zeros(*pieces[0].shape[:-1], total, device=t.device, dtype=t.dtype)
    weights = torch.zeros(total, device=t.device, dtype=t.dtype)
    for k, piece in enumerate(pieces):
        n = piece.shape[-1]
        out[..., k * stride : k * stride + n] += weight[:n] * piece
        weights[k * stride : k * stride + n] += weight[:n]
    return out / weights


@dataclass
class Segments:
    """The ids of each segment (B, frames_k[, depth]), their loudness scales (B, segments) (None: not normalised)
    and the stride between segment starts, in samples."""

    ids: list[Tensor]
    scales: Tensor | None
    stride: int


def segmenting_of(tok: "Tokenizer", seconds: float | None, overlap: float | None, normalize: bool | None) -> Segmenting:
    """The segmenting the arguments name; those left None: the tokenizer's ``segments`` config, else EnCodec's."""
    base = tok.modality.segmenting or Segmenting()
    return Segmenting(base.seconds if seconds is None else seconds, base.overlap if overlap is None else overlap,
                      base.normalize if normalize is None else normalize)


@torch.no_grad()
def encode_segments(tok: "Tokenizer", x: Tensor, depth: int | None = None, seconds: float | None = None,
                    overlap: float | None = None, normalize: bool | None = None) -> Segments:
    """Waveforms (B, C, T), all T samples valid, coded segment by segment (``seconds`` long, ``overlap`` of a
    segment shared with the next), each divided by its loudness scale first (``normalize``); unset arguments
    follow the tokenizer's ``segments`` config (else EnCodec 48 kHz's 1 s, 0.01, normalised); ``depth`` as
    ``Tokenizer.encode``'s."""
    segmenting = segmenting_of(tok, seconds, overlap, normalize)
    codes = encode_clips(tok, segmenting, x, **({} if depth is None else {"depth": depth}))
    ids = [torch.stack(level) for level in zip(*codes.ids)]
    scales = None if codes.scales is None else torch.stack(codes.scales)
    return Segments(ids, scales, segmenting.length_stride(tok.modality.sample_rate, x.shape[-1])[1])


@torch.no_grad()
def decode_segments(tok: "Tokenizer", segments: Segments) -> Tensor:
    """The waveforms (B, C, stride * (segments - 1) + the last segment's frames * hop) of ``segments``: each
    segment decoded, multiplied by its scale and overlap-added (not clamped, see ``decode_clips``)."""
    if not segments.ids:
        raise ValueError("no segments to decode")
    items = range(segments.ids[0].shape[0])
    scales = None if segments.scales is None else list(segments.scales)
    codes = ClipCodes([[ids[b] for ids in segments.ids] for b in items], scales)
    return torch.stack(decode_clips(tok, codes, segments.stride))
