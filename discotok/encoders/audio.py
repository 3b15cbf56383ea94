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
``pad_mode="reflect"`` pads every convolution by reflection as EnCodec does (each item about its
own length), and ``residual_shortcut`` gives the residual units a 1x1 convolution as skip.

SNAC's options: ``depthwise`` makes the residual units' dilated convolutions and the head per-channel
(the head then keeps the width: ``latent_dim`` = channels * 2^stages); ``head_activation=False``
drops the activation before the head; ``sequence="local_attention"`` is one windowed attention layer
of ``attention_window`` frames; ``frames_per_token=s`` groups s consecutive frames into one token
position, z (B, N / s, s * latent_dim) (frame-major), for a multi-rate ``rvq`` whose coarsest level
codes one vector per s frames. ``hop_length`` is then the samples of a token position (s frames),
and ``length_multiple`` (a multiple of it) the samples an input length is padded to: whole windows
of the attention and whole tokens, hop * lcm(s, window) as SNAC pads.
``pad_to`` says what an item of L samples (not a multiple of the hop) is encoded as: ``"hop"`` (default)
the item zero-padded to whole hops; ``"stride"`` the item as it is, every convolution extending its own
input with zeros to whole strides (transformers' Mimi, EnCodec's ``pad_for_conv1d``). Both give ``ceil(L / hop)``
frames; they differ in the last one. Reflect padding always extends by strides, by reflection. ``"none"``: the
item as it is, each strided convolution giving the frames PyTorch gives it padded by ``ceil(stride / 2)`` on both
sides (DAC's, ``floor((L + 2 ceil(s / 2) - 2 s) / s) + 1``; whole hops still give ``L / hop``; centred
zero-padded convolutions of strides >= 2 only; X-Codec's acoustic encoder).
``conv_norm="time_group"`` follows every convolution with a ``GroupNorm(1, C)`` over each item's own length
(EnCodec 48 kHz's ``time_group_norm``; not causal).
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
from discotok.nn.streaming import Chain, Pointwise, StreamingConv, StreamingLSTM, StreamingResidual
from discotok.encoders.base import EncoderOutput, WaveformEncoder
from discotok.layout import Layout
from discotok.nn.waveform import check_audio_batch, check_lengths
from discotok.registry import ENCODERS

PAD_TO = ("hop", "stride", "none")


@ENCODERS.register("audio")
class AudioEncoder(WaveformEncoder):
    """Waveforms (B, in_channels, T), T a multiple of ``length_multiple`` -> (B, T / hop, frames_per_token *
    latent_dim)."""

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
        pad_mode: str = "zeros",
        residual_shortcut: bool = False,
        depthwise: bool = False,
        head_activation: bool = True,
        attention_window: int = 32,
        frames_per_token: int = 1,
        pad_to: str = "hop",
        conv_norm: str = "none",
    ) -> None:
        super().__init__()
        if not ratios or any(int(r) < 1 for r in ratios):
            raise ValueError(f"ratios must be positive integers, got {list(ratios)}")
        if int(frames_per_token) < 1:
            raise ValueError(f"frames_per_token must be a positive integer, got {frames_per_token}")
        if pad_to not in PAD_TO:
            raise ValueError(f"pad_to must be one of {PAD_TO}, got {pad_to!r}")
        if pad_to == "none" and (causal or pad_mode != "zeros" or int(frames_per_token) != 1 or min(ratios) < 2):
            raise ValueError("pad_to 'none' (DAC's frame counts) takes centred, zero-padded convolutions of strides "
                             "of at least 2 and one frame per token")
        self.in_channels = in_channels
        self.pad_to = pad_to
        self.pad_mode = pad_mode
        self.by_stride = pad_to == "stride" or pad_mode == "reflect"
        self.ratios = [int(r) for r in ratios]
        self.frames_per_token = int(frames_per_token)
        self.hop_length = math.prod(self.ratios) * self.frames_per_token
        self.causal = bool(causal)
        self.stem = Conv1d(in_channels, channels, kernel_size, causal=causal, pad_mode=pad_mode, norm=conv_norm)
        self.stages = nn.ModuleList()
        width = channels
        for r in reversed(self.ratios):
            stage = nn.Module()
            stage.units = nn.ModuleList(
                ResidualUnit(width, residual_kernel_size, d, compress, activation, causal, pad_mode, residual_shortcut,
                             depthwise, norm=conv_norm)
                for d in dilations
            )
            stage.act = make_activation(activation, width)
            stage.down = Conv1d(width, 2 * width, 2 * r, stride=r, causal=causal, pad_mode=pad_mode, norm=conv_norm)
            stage.stride = r
            self.stages.append(stage)
            width *= 2
        self.sequence = SequenceModel(width, sequence, sequence_layers, sequence_heads, causal, attention_window)
        self.multiple = math.prod(self.ratios) * math.lcm(self.frames_per_token, self.sequence.window)
        self.act = make_activation(activation, width) if head_activation else nn.Identity()
        self.head = Conv1d(width, latent_dim, last_kernel_size, causal=causal, pad_mode=pad_mode,
                           groups=width if depthwise else 1, norm=conv_norm)

    @property
    def length_multiple(self) -> int:
        """Samples an input's length is padded to a multiple of: hop * lcm(frames_per_token, attention window)."""
        return self.multiple

    def num_frames(self, num_samples: int | Tensor) -> int | Tensor:
        """Frames of an item of ``num_samples`` samples (int or tensor); ``pad_to="none"``: DAC's count, stage by
        stage (see the module docstring)."""
        if self.pad_to != "none":
            return super().num_frames(num_samples)
        for stage in self.stages:
            num_samples = self.stage_frames(num_samples, stage)
        return num_samples

    def stage_frames(self, valid: int | Tensor, stage: nn.Module) -> int | Tensor:
        """The valid outputs of ``stage``'s strided convolution for ``valid`` valid inputs: ceil(valid / stride),
        or with ``pad_to="none"`` PyTorch's count for the convolution padded by its left padding on both sides."""
        if self.pad_to == "none":
            return (valid + 2 * stage.down.pad[0] - 2 * stage.stride) // stage.stride + 1
        return -(-valid // stage.stride)

    def stream(self) -> Chain:
        """This (causal) encoder fed chunk by chunk: ``push`` waveforms (B, C, m), get latents (B, D, n) of the
        frames they complete; ``flush`` at the end of the input (see ``discotok.nn.streaming``)."""
        if not self.causal:
            raise ValueError("only a causal encoder streams (causal: true); this one looks ahead")
        if self.frames_per_token != 1:
            raise ValueError("an encoder of several frames per token (frames_per_token) does not stream")
        steps: list = [StreamingConv(self.stem)]
        for stage in self.stages:
            steps += [*(StreamingResidual(u) for u in stage.units), Pointwise(stage.act), StreamingConv(stage.down)]
        steps += [StreamingLSTM(self.sequence), Pointwise(self.act), StreamingConv(self.head)]
        return Chain(steps, pad_to=None if self.by_stride else self.hop_length)

    def forward(self, x: Tensor, lengths: Tensor | None = None, num_tokens: int | None = None) -> EncoderOutput:
        """``lengths`` (B,) valid samples per item, or None when every item fills ``x`` (no prefix: one token per hop)."""
        check_audio_batch(x, self.in_channels, self.length_multiple)
        valid = None
        if lengths is not None:
            lengths = check_lengths(lengths, x.shape[0], x.shape[-1]).to(x.device)
            x = apply_mask(x, length_mask(lengths, x.shape[-1]))
            # pad_to hop: the item zero-padded to whole length multiples (hops), as alone; stride (and reflect): its
            # own length, each convolution extending it to whole strides; none: its own length, DAC's frames
            multiple = self.length_multiple
            valid = lengths if self.by_stride or self.pad_to == "none" else -(-lengths // multiple) * multiple
        mask = length_mask(valid, x.shape[-1])
        h = self.stem(x, mask)
        for stage in self.stages:
            for unit in stage.units:
                h = unit(h, mask)
            h = stage.down(stage.act(h), mask)
            if valid is not None:
                valid = self.stage_frames(valid, stage)
                mask = length_mask(valid, h.shape[-1])
        h = self.head(self.act(self.sequence(h, valid)), mask)
        z = rearrange(h, "b d (m s) -> b m (s d)", s=self.frames_per_token)
        return EncoderOutput(z, Layout("frames", (z.shape[1],)))
