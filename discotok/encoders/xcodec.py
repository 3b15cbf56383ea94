"""``xcodec``: X-Codec's encoder (Ye et al. 2024): a DAC-style acoustic encoder and a HuBERT semantic branch, joined.

The waveform goes, as it is, to the ``acoustic`` encoder (our ``audio`` encoder, DAC's layout) and, zero-padded
by half a hop on each side, to ``hubert`` (``discotok.nn.hubert``): the mean of HuBERT's hidden states passes
through the semantic convolutions (a convolution, then per block residual units of ELU / dilated convolution /
ELU / 1x1, all without bias, and a stride-1 convolution of width ``dim * channel_ratios[i]``). Both give one
frame per hop; they are concatenated (acoustic first) and mixed by a linear map ``fc`` to the code space.

HuBERT is frozen as in X-Codec's training (``train_hubert=False``: run without gradients, its parameters not
trained); ``train_hubert=True`` lets fine-tuning reach it.

HuBERT sees the input at the tokenizer's sample rate: transformers' ``XcodecModel`` does not resample (the
published models are 16 kHz, HuBERT's rate); files are resampled to that rate on load.

An item of L samples is encoded as transformers' ``XcodecModel`` encodes it alone, in a padded batch too: HuBERT's
frames of the item padded by half a hop on each side give the frame count, ``num_frames(L)`` =
floor((L - 80) / 320) + 1 for X-Codec's hop of 320 and HuBERT's receptive field of 400 (``ceil(L / 320)``, less
one when ``L mod 320`` lies in 1..79); the acoustic encoder sees the item as it is (DAC's frame counts, ``pad_to
"none"``), or, where that gives another count (``L mod 320`` in 80..311), the item padded by half a hop on each
side, as transformers does. A batch's latents have the frames of its longest item (of T samples without
``lengths``); an item's frames past its own ``num_frames`` are padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import count

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from discotok.encoders.audio import AudioEncoder
from discotok.encoders.base import EncoderOutput, WaveformEncoder
from discotok.layout import Layout
from discotok.nn.conv1d import Conv1d, ResidualUnit, apply_mask, length_mask
from discotok.nn.hubert import Hubert
from discotok.nn.waveform import check_audio_batch, check_lengths
from discotok.registry import ENCODERS


class SemanticConvs(nn.Module):
    """X-Codec's semantic encoder: (B, dim, N) -> (B, dim * channel_ratios[-1], N), frame for frame."""

    def __init__(self, dim: int, kernel_size: int, channel_ratios: Sequence[float], dilations: Sequence[int],
                 unit_kernel_size: int) -> None:
        super().__init__()
        self.stem = Conv1d(dim, dim, kernel_size, bias=False)
        self.blocks = nn.ModuleList()
        width = dim
        for ratio in channel_ratios:
            block = nn.Module()
            block.units = nn.ModuleList(ResidualUnit(width, unit_kernel_size, d, 1, "elu", bias=False)
                                        for d in dilations)
            block.conv = Conv1d(width, int(dim * ratio), 3)
            width = int(dim * ratio)
            self.blocks.append(block)
        self.out_dim = width

    def forward(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        h = self.stem(h, mask)
        for block in self.blocks:
            for unit in block.units:
                h = unit(h, mask)
            h = block.conv(h, mask)
        return h


@ENCODERS.register("xcodec")
class XcodecEncoder(WaveformEncoder):
    """Mono waveforms (B, 1, T), T a multiple of the hop -> (B, N, dim), N = T / hop, or with ``lengths`` the longest
    item's ``num_frames`` (see the module docstring).

    ``acoustic``: the ``audio`` encoder's keyword arguments; ``hubert``: ``discotok.nn.hubert.Hubert``'s;
    ``dim``: the code space (the acoustic latent and HuBERT's width together, X-Codec's ``hidden_size``);
    ``train_hubert``: whether training reaches HuBERT (X-Codec's: no).
    """

    def __init__(
        self,
        acoustic: dict,
        hubert: dict,
        dim: int,
        kernel_size: int = 3,
        channel_ratios: Sequence[float] = (1, 1),
        block_dilations: Sequence[int] = (1, 1),
        unit_kernel_size: int = 3,
        train_hubert: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = 1
        self.train_hubert = bool(train_hubert)
        self.acoustic = AudioEncoder(**{**acoustic, "in_channels": 1, "pad_to": "none"})
        self.hop_length = self.acoustic.hop_length
        self.pad = self.hop_length // 2
        self.semantic = Hubert(**hubert).requires_grad_(self.train_hubert)
        for n in (1, 7):  # HuBERT's frames of whole hops padded by half a hop on each side: one per hop
            if self.semantic.num_frames(n * self.hop_length + 2 * self.pad) != n:
                raise ValueError(f"HuBERT's convolutions (kernels {self.semantic.features.kernels}, strides "
                                 f"{self.semantic.features.strides}) do not give one frame per hop of {self.hop_length}")
            if self.acoustic.num_frames(n * self.hop_length) != n:
                raise ValueError(f"the acoustic encoder (ratios {self.acoustic.ratios}) does not give one frame per "
                                 f"hop of {self.hop_length}")
        self.min_samples = next(n for n in count(1) if self.num_frames(n) >= 1)
        width = self.semantic.projection.out_features
        self.semantic_encoder = SemanticConvs(width, kernel_size, channel_ratios, block_dilations, unit_kernel_size)
        self.fc = nn.Linear(self.acoustic.head.conv.out_channels + self.semantic_encoder.out_dim, dim)

    def num_frames(self, num_samples: int | Tensor) -> int | Tensor:
        """Frames of an item of ``num_samples`` samples: HuBERT's of the item padded by half a hop on each side
        (transformers' rule; floor((L - 80) / 320) + 1 at X-Codec's sizes)."""
        return self.semantic.num_frames(num_samples + 2 * self.pad)

    def max_samples(self, num_frames: int) -> int:
        """The longest item of at most ``num_frames`` frames: ``num_frames * hop + min_samples - 1``."""
        return num_frames * self.hop_length + self.min_samples - 1

    def acoustic_latents(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """The acoustic encoder's latents (B, T / hop, D) of items of ``lengths`` samples, each as it is or, where
        that gives a frame count other than HuBERT's, padded by half a hop on each side (transformers' rule)."""
        if lengths is None:
            return self.acoustic(x).z
        frames = self.num_frames(lengths)
        shifted = self.acoustic.num_frames(lengths) != frames
        moved = lengths + 2 * self.pad * shifted.long()
        wrong = shifted & (self.acoustic.num_frames(moved) != frames)
        if wrong.any():
            raise ValueError(f"items of {lengths[wrong].tolist()} samples: the acoustic encoder gives "
                             f"{self.acoustic.num_frames(moved[wrong]).tolist()} frames, HuBERT "
                             f"{frames[wrong].tolist()}, shifted or not")
        wide = torch.where(shifted[:, None, None], F.pad(x, (self.pad, self.hop_length - self.pad)),
                           F.pad(x, (0, self.hop_length)))
        return self.acoustic(wide, moved).z[:, : x.shape[-1] // self.hop_length]

    def forward(self, x: Tensor, lengths: Tensor | None = None, num_tokens: int | None = None) -> EncoderOutput:
        """``lengths`` (B,) valid samples per item, or None when every item fills ``x``."""
        check_audio_batch(x, 1, self.hop_length)
        frames, mask = None, None
        if lengths is not None:
            lengths = check_lengths(lengths, x.shape[0], x.shape[-1]).to(x.device)
            if int(lengths.min()) < self.min_samples:
                raise ValueError(f"lengths {lengths.tolist()}: an X-Codec item needs at least {self.min_samples} "
                                 "samples (one frame)")
            x = apply_mask(x, length_mask(lengths, x.shape[-1]))
            frames = self.num_frames(lengths)
            mask = length_mask(frames, x.shape[-1] // self.hop_length)
        acoustic = self.acoustic_latents(x, lengths)
        hubert_lengths = None if lengths is None else lengths + 2 * self.pad
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.train_hubert):
            semantic = self.semantic(F.pad(x[:, 0], (self.pad, self.pad)), hubert_lengths)
        semantic = self.semantic_encoder(rearrange(semantic, "b n d -> b d n"), mask)
        z = self.fc(torch.cat([acoustic, rearrange(semantic, "b d n -> b n d")], dim=-1))
        if frames is not None:
            z = z[:, : int(frames.max())]
        return EncoderOutput(z, Layout("frames", (z.shape[1],)))
