"""``audio``: a SEANet-style waveform encoder (EnCodec / DAC); N = frames, one token per hop.

A conv stem, then per downsampling ratio r: residual units (dilated convolutions) and a
strided convolution (kernel 2r, stride r) that doubles the width; an optional sequence model
(LSTM as EnCodec, or a transformer) in the bottleneck; a final convolution to ``latent_dim``.
``ratios`` are given in the decoder's (upsampling) order, as in EnCodec: [8, 5, 4, 2] means
the encoder downsamples by 2, 4, 5 then 8, a hop of 320 samples (75 frames/s at 24 kHz).

``causal=True`` pads every convolution on the left only (and a transformer bottleneck masks
the future): frame j depends on samples < (j + 1) * hop only, so a prefix of whole hops
encodes to the same ids whatever follows it.

With ``lengths`` (B,) samples, every convolution zeroes its input past each item's valid
length (``num_frames(length) * hop`` at the input resolution, scaled down per stage): an item
in a zero-padded batch gets, over its valid frames, what it gets encoded alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from discotok.nn.conv1d import Conv1d, ResidualUnit, apply_mask, length_mask
from discotok.nn.conv1d import activation as make_activation
from discotok.nn.sequence import SequenceModel
from discotok.registry import ENCODERS, ConfigError
from discotok.tokenizers.layout import EncoderOutput, Layout


def check_audio_batch(x: Tensor, channels: int, multiple: int = 1) -> None:
    """Raise ``ValueError`` unless ``x`` is a float (B, channels, T) batch with ``multiple`` dividing T."""
    if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[1] != channels:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected waveforms of shape (B, {channels}, T), got {shape}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"waveforms must be floating point in [-1, 1], got {x.dtype}")
    if x.shape[-1] == 0 or x.shape[-1] % multiple:
        raise ValueError(f"waveform length must be a positive multiple of the hop {multiple}, got {x.shape[-1]}")


def check_lengths(lengths: Tensor, batch: int, total: int) -> Tensor:
    """``lengths`` as an int64 (B,) tensor with values in 1..total, else ``ValueError``."""
    lengths = torch.as_tensor(lengths)
    if lengths.shape != (batch,) or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be integers of shape ({batch},), got {lengths.dtype} {tuple(lengths.shape)}")
    if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > total):
        raise ValueError(f"lengths must lie in 1..{total} (the padded length), got {lengths.tolist()}")
    return lengths.long()


def check_audio_parts(encoder: nn.Module, decoder: nn.Module, channels: int) -> None:
    """``ConfigError`` unless the encoder and decoder agree with each other and the channel count."""
    if getattr(encoder, "in_channels", channels) != channels or getattr(decoder, "out_channels", channels) != channels:
        raise ConfigError(
            f"config: channels is {channels} but the encoder takes {getattr(encoder, 'in_channels', '?')} and "
            f"the decoder gives {getattr(decoder, 'out_channels', '?')}"
        )
    if not hasattr(encoder, "hop_length"):
        raise ConfigError(f"config: encoder {type(encoder).__name__} is not a waveform encoder (no hop_length)")
    if getattr(decoder, "hop_length", encoder.hop_length) != encoder.hop_length:
        raise ConfigError(
            f"config: the decoder's hop_length {decoder.hop_length} differs from the encoder's {encoder.hop_length}"
        )


def mask_past(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Zero ``x`` (B, C, T) past each item's length (``lengths`` (B,) or None)."""
    return x if lengths is None else apply_mask(x, length_mask(lengths, x.shape[-1]))


@ENCODERS.register("audio")
class AudioEncoder(nn.Module):
    """Waveforms (B, in_channels, T), T a multiple of ``hop_length`` -> (B, T / hop, latent_dim)."""

    def __init__(
        self,
        latent_dim: int,
        in_channels: int = 1,
        channels: int = 32,
        ratios: Sequence[int] = (8, 5, 4, 2),
        dilations: Sequence[int] = (1,),
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        compress: int = 2,
        activation: str = "elu",
        sequence: str = "lstm",
        sequence_layers: int = 2,
        sequence_heads: int = 8,
        causal: bool = False,
    ) -> None:
        super().__init__()
        if not ratios or any(int(r) < 1 for r in ratios):
            raise ValueError(f"ratios must be positive integers, got {list(ratios)}")
        self.in_channels = in_channels
        self.ratios = [int(r) for r in ratios]
        self.hop_length = math.prod(self.ratios)
        self.causal = bool(causal)
        self.stem = Conv1d(in_channels, channels, kernel_size, causal=causal)
        self.stages = nn.ModuleList()
        width = channels
        for r in reversed(self.ratios):
            stage = nn.Module()
            stage.units = nn.ModuleList(
                ResidualUnit(width, residual_kernel_size, d, compress, activation, causal) for d in dilations
            )
            stage.act = make_activation(activation, width)
            stage.down = Conv1d(width, 2 * width, 2 * r, stride=r, causal=causal)
            stage.stride = r
            self.stages.append(stage)
            width *= 2
        self.sequence = SequenceModel(width, sequence, sequence_layers, sequence_heads, causal)
        self.act = make_activation(activation, width)
        self.head = Conv1d(width, latent_dim, last_kernel_size, causal=causal)

    def token_layout(self, num_samples: int) -> Layout:
        """The frame layout of a waveform of ``num_samples`` (a multiple of the hop)."""
        return Layout("frames", (num_samples // self.hop_length,))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """``lengths`` (B,) valid samples per item, or None when every item fills ``x``."""
        check_audio_batch(x, self.in_channels, self.hop_length)
        valid = None
        if lengths is not None:
            lengths = check_lengths(lengths, x.shape[0], x.shape[-1]).to(x.device)
            x = apply_mask(x, length_mask(lengths, x.shape[-1]))
            valid = -(-lengths // self.hop_length) * self.hop_length
        mask = length_mask(valid, x.shape[-1])
        h = self.stem(x, mask)
        for stage in self.stages:
            for unit in stage.units:
                h = unit(h, mask)
            h = stage.down(stage.act(h), mask)
            if valid is not None:
                valid = valid // stage.stride
                mask = length_mask(valid, h.shape[-1])
        h = self.head(self.act(self.sequence(h, valid)), mask)
        return EncoderOutput(rearrange(h, "b d n -> b n d"), Layout("frames", (h.shape[-1],)))
