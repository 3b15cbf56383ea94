"""``audio``: the SEANet-style waveform decoder mirroring the ``audio`` encoder (EnCodec / DAC).

A conv stem from ``latent_dim`` to the bottleneck width, the optional sequence model, then per
ratio (in the given order, [8, 5, 4, 2]: upsample by 8 first) a transposed convolution
(kernel 2r, stride r) that halves the width followed by residual units, and a final
convolution to ``out_channels``. N frames decode to exactly N * hop samples. ``causal=True``
pads on the left and trims transposed convolutions on the right: sample t depends on frames
<= t / hop only, so a prefix of the ids decodes to a prefix of the waveform.

``upsample_crop="half_stride"`` crops ``ceil(r / 2)`` samples from each side of every transposed
convolution, as DAC does: with an odd ratio a stage comes out one sample short, and the output is
zero-padded on the right to N * hop. ``final_activation="tanh"`` bounds the output (DAC).
``pad_mode``, ``residual_shortcut`` and ``conv_norm`` as for the ``audio`` encoder (EnCodec: ``reflect``, True;
48 kHz: ``time_group``, the transposed convolutions' norm taken before their trim, as EnCodec's).

SNAC's options: ``depthwise`` makes the stem a depthwise then a pointwise convolution and the residual
units' dilated convolutions per-channel; ``noise`` adds a noise block after every upsampling
(``discotok.nn.noise``: random in eval mode too, from torch's global generator);
``sequence="local_attention"`` with ``attention_window`` as for the encoder; ``frames_per_token=s``
takes tokens (B, N, s * latent_dim) of s frames each (the encoder's grouping), ``hop_length`` being
the samples of a token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from discotok.nn.conv1d import Conv1d, ConvTranspose1d, ResidualUnit, SeparableConv1d, length_mask
from discotok.nn.conv1d import activation as make_activation
from discotok.nn.noise import NoiseBlock
from discotok.nn.sequence import SequenceModel
from discotok.nn.streaming import Chain, Pointwise, StreamingConv, StreamingConvTranspose, StreamingLSTM, StreamingResidual
from discotok.decoders.base import WaveformDecoder
from discotok.layout import Layout
from discotok.registry import DECODERS


UPSAMPLE_CROPS = ("exact", "half_stride")
FINAL_ACTIVATIONS = (None, "tanh")


def check_frames(z_q: Tensor, layout: Layout, name: str) -> None:
    """``ValueError`` unless ``layout`` is a frame layout of ``z_q``'s N tokens."""
    if layout.kind != "frames" or layout.num_tokens != z_q.shape[1]:
        raise ValueError(f"{name} decoder needs a frames layout of {z_q.shape[1]} tokens, got {layout}")


@DECODERS.register("audio")
class AudioDecoder(WaveformDecoder):
    """Tokens (B, N, frames_per_token * latent_dim) -> waveforms (B, out_channels, N * hop_length)."""

    def __init__(
        self,
        latent_dim: int,
        out_channels: int = 1,
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
        upsample_crop: str = "exact",
        final_activation: str | None = None,
        pad_mode: str = "zeros",
        residual_shortcut: bool = False,
        depthwise: bool = False,
        noise: bool = False,
        attention_window: int = 32,
        frames_per_token: int = 1,
        conv_norm: str = "none",
    ) -> None:
        super().__init__()
        if not ratios or any(int(r) < 1 for r in ratios):
            raise ValueError(f"ratios must be positive integers, got {list(ratios)}")
        if int(frames_per_token) < 1:
            raise ValueError(f"frames_per_token must be a positive integer, got {frames_per_token}")
        if upsample_crop not in UPSAMPLE_CROPS:
            raise ValueError(f"upsample_crop must be one of {UPSAMPLE_CROPS}, got {upsample_crop!r}")
        if final_activation not in FINAL_ACTIVATIONS:
            raise ValueError(f"final_activation must be one of {FINAL_ACTIVATIONS}, got {final_activation!r}")
        self.out_channels = out_channels
        self.causal = bool(causal)
        self.ratios = [int(r) for r in ratios]
        self.frames_per_token = int(frames_per_token)
        self.hop_length = math.prod(self.ratios) * self.frames_per_token
        width = channels * 2 ** len(self.ratios)
        if depthwise and conv_norm != "none":
            raise ValueError("conv_norm applies to the plain (not depthwise) SEANet decoder")
        self.stem = (SeparableConv1d(latent_dim, width, kernel_size, causal=causal, pad_mode=pad_mode) if depthwise else
                     Conv1d(latent_dim, width, kernel_size, causal=causal, pad_mode=pad_mode, norm=conv_norm))
        self.sequence = SequenceModel(width, sequence, sequence_layers, sequence_heads, causal, attention_window)
        self.stages = nn.ModuleList()
        for r in self.ratios:
            stage = nn.Module()
            stage.act = make_activation(activation, width)
            crop = math.ceil(r / 2) if upsample_crop == "half_stride" else None
            stage.up = ConvTranspose1d(width, width // 2, 2 * r, stride=r, causal=causal, crop=crop, norm=conv_norm)
            stage.short = 0 if crop is None else 2 * crop - r  # samples short of r per frame (odd r, cropped)
            stage.stride = r
            width //= 2
            stage.noise = NoiseBlock(width) if noise else nn.Identity()
            stage.units = nn.ModuleList(
                ResidualUnit(width, residual_kernel_size, d, compress, activation, causal, pad_mode, residual_shortcut,
                             depthwise, norm=conv_norm)
                for d in dilations
            )
            self.stages.append(stage)
        self.act = make_activation(activation, width)
        self.head = Conv1d(width, out_channels, last_kernel_size, causal=causal, pad_mode=pad_mode, norm=conv_norm)
        self.final = nn.Tanh() if final_activation == "tanh" else nn.Identity()

    def stream(self) -> Chain:
        """This (causal) decoder fed frame chunks (B, D, n), giving their samples (B, C, n * hop) as they come."""
        if not self.causal:
            raise ValueError("only a causal decoder streams (causal: true); this one looks ahead")
        if self.frames_per_token != 1:
            raise ValueError("a decoder of several frames per token (frames_per_token) does not stream")
        steps: list = [StreamingConv(self.stem), StreamingLSTM(self.sequence)]
        for stage in self.stages:
            steps += [Pointwise(stage.act), StreamingConvTranspose(stage.up), Pointwise(stage.noise),
                      *(StreamingResidual(u) for u in stage.units)]
        return Chain([*steps, Pointwise(self.act), StreamingConv(self.head), Pointwise(self.final)])

    def forward(
        self, z_q: Tensor, layout: Layout, keep: Tensor | None = None, size: Sequence[int] | None = None,
        lengths: Tensor | None = None,
    ) -> Tensor:
        """``lengths`` (B,) valid frames per item: frames past them never reach the valid samples."""
        check_frames(z_q, layout, "audio")
        s = self.frames_per_token
        valid = None if lengths is None else lengths.to(z_q.device).long() * s
        h = rearrange(z_q, "b m (s d) -> b d (m s)", s=s)
        mask = length_mask(valid, h.shape[-1])
        h = self.sequence(self.stem(h, mask), valid)
        for stage in self.stages:
            h = stage.noise(stage.up(stage.act(h), mask))
            if valid is not None:
                valid = valid * stage.stride - stage.short  # an item's own length after this stage
                mask = length_mask(valid, h.shape[-1])
            for unit in stage.units:
                h = unit(h, mask)
        out = self.final(self.head(self.act(h), mask))
        short = z_q.shape[1] * self.hop_length - out.shape[-1]  # DAC's crop with an odd ratio
        return F.pad(out, (0, short)) if short else out

