"""The encoder contract: what goes in, ``EncoderOutput`` out, the layout for an input size.

Every encoder is an ``Encoder``: ``forward(x, lengths=None, num_tokens=None)`` turns a batch
of its modality into ``EncoderOutput`` (``z`` (B, N, D) and its ``Layout``). The tokenizer's
modality checks and pads the batch first and passes ``lengths`` (valid samples per item)
only to waveform encoders; it passes ``num_tokens`` (a prefix of k tokens) only to encoders
that declare ``sequence_length`` (1-D latent-token encoders). Capabilities are declared,
never probed:

* ``sequence_length``: N of a 1-D encoder whose any prefix is a valid encoding, else None;
* ``draws_prefix``: nested dropout; in training ``EncoderOutput.keep`` holds each sample's
  prefix length and the decoder must mask the rest (``Decoder.masks_tokens``);
* ``patch_size`` and ``alignment_layer()``: the feature map representation alignment uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from discotok.layout import Layout


@dataclass
class EncoderOutput:
    """What an encoder returns: ``z`` of shape (B, N, D) and its layout.

    ``keep`` (B,), set by nested-dropout encoders in training: sample b's decoder sees
    only its first ``keep[b]`` tokens, the rest replaced by the decoder's mask token.
    """

    z: Tensor
    layout: Layout
    keep: Tensor | None = None


class Encoder(nn.Module):
    """Base class of every encoder (see the module docstring)."""

    in_channels: int
    sequence_length: int | None = None
    draws_prefix: ClassVar[bool] = False
    patch_size: int | None = None

    def forward(self, x: Tensor, lengths: Tensor | None = None, num_tokens: int | None = None) -> EncoderOutput:
        """A checked batch of the modality -> ``EncoderOutput``; ``lengths`` (waveforms) and ``num_tokens``
        (sequence encoders) as the module docstring says."""
        raise NotImplementedError

    def token_layout(self, size: Sequence[int]) -> Layout:
        """The layout of the tokens of an input of ``size`` ((H, W) of an image, (T,) samples of a waveform)."""
        raise NotImplementedError

    def alignment_layer(self) -> str | None:
        """The module path (inside this encoder) of the feature map representation alignment uses by default."""
        return None


def check_image_batch(x: Tensor, channels: int, multiple: int) -> None:
    """Raise ``ValueError`` unless ``x`` is (B, channels, H, W) with H, W divisible by ``multiple``."""
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"expected images of shape (B, {channels}, H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(f"image height and width must be multiples of {multiple}, got {h}x{w}")


class WaveformEncoder(Encoder):
    """An encoder of waveforms (B, in_channels, T), T a multiple of ``length_multiple``: one token position per hop.

    ``forward`` takes ``lengths`` (B,) valid samples per item of a zero-padded batch.
    ``length_multiple`` (a multiple of ``hop_length``; by default the hop) is what the modality pads
    input lengths to (SNAC: whole attention windows of whole tokens). ``num_frames(L)`` is the frames an item
    of L samples encodes to (by default ``ceil(L / hop)``; X-Codec's follow transformers' rule) and
    ``max_samples(n)`` the longest item of at most n frames.
    """

    hop_length: int

    @property
    def length_multiple(self) -> int:
        """Samples an input's length is padded to a multiple of."""
        return self.hop_length

    def num_frames(self, num_samples: int | Tensor) -> int | Tensor:
        """Frames (token positions) an item of ``num_samples`` samples (int or tensor) encodes to: by default
        ceil(num_samples / hop), rounded up to whole ``length_multiple``."""
        multiple = self.length_multiple
        return -(-num_samples // multiple) * (multiple // self.hop_length)

    def max_samples(self, num_frames: int) -> int:
        """The most samples an item may hold and still encode to at most ``num_frames`` frames: by default
        ``num_frames * hop``."""
        return num_frames * self.hop_length

    def stream(self) -> Any:
        """This encoder fed chunk by chunk (``push(x)`` -> latents (B, D, n), ``flush()``), for causal encoders."""
        raise ValueError(f"encoder {type(self).__name__} does not stream")

    def token_layout(self, size: Sequence[int]) -> Layout:
        """The frame layout of a waveform of ``size[-1]`` samples."""
        return Layout("frames", (int(self.num_frames(int(size[-1]))),))
