"""``msstft``: EnCodec's multi-scale STFT discriminator.

Each sub-discriminator takes the complex STFT of the waveform at one scale (n_fft 2048, 1024,
512, 256, 128 by default; hop n_fft / 4), real and imaginary parts of every channel stacked
as image channels (B, 2C, frames, bins), and runs 2-D convolutions dilated along time and
strided along frequency (Défossez et al. 2022).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from discotok.discriminators.base import DiscriminatorOutput
from discotok.registry import DISCRIMINATORS


class STFTDiscriminator(nn.Module):
    """One scale: a (3, 9) conv, convs dilated 1, 2, 4 in time and strided 2 in frequency, a (3, 3) conv, a logit conv."""

    def __init__(self, n_fft: int, in_channels: int, filters: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop = n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        layers = [weight_norm(nn.Conv2d(2 * in_channels, filters, (3, 9), padding=(1, 4)))]
        for d in dilations:
            layers.append(weight_norm(nn.Conv2d(filters, filters, (3, 9), (1, 2), dilation=(d, 1), padding=(d, 4))))
        layers.append(weight_norm(nn.Conv2d(filters, filters, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(layers)
        self.out = weight_norm(nn.Conv2d(filters, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        flat = rearrange(x.float(), "b c t -> (b c) t")
        spec = torch.stft(
            flat, self.n_fft, self.hop, window=self.window, center=True, pad_mode="constant",
            normalized=True, return_complex=True,
        )
        h = rearrange(torch.view_as_real(spec), "(b c) f n ri -> b (c ri) n f", b=x.shape[0]).to(x.dtype)
        features = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
            features.append(h)
        logits = self.out(h)
        features.append(logits)
        return logits, features


@DISCRIMINATORS.register("msstft")
class MultiScaleSTFTDiscriminator(nn.Module):
    """One ``STFTDiscriminator`` per FFT size (EnCodec: 2048, 1024, 512, 256, 128; 32 filters)."""

    def __init__(
        self,
        in_channels: int = 1,
        n_ffts: Sequence[int] = (2048, 1024, 512, 256, 128),
        filters: int = 32,
        dilations: Sequence[int] = (1, 2, 4),
    ) -> None:
        super().__init__()
        if not n_ffts or any(int(n) < 4 or int(n) % 4 for n in n_ffts):
            raise ValueError(f"n_ffts must be multiples of 4, got {list(n_ffts)}")
        self.discriminators = nn.ModuleList(
            STFTDiscriminator(int(n), in_channels, filters, dilations) for n in n_ffts
        )

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        """Waveforms (B, C, T) -> one logits map and one feature list per STFT scale."""
        outs = [d(x) for d in self.discriminators]
        return DiscriminatorOutput([o[0] for o in outs], [o[1] for o in outs])
