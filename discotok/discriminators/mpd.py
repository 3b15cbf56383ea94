"""``mpd``: HiFi-GAN's multi-period discriminator for waveforms.

For each period p the waveform (B, C, T) is zero-padded to a multiple of p and folded into a
(B, C, T/p, p) image; a stack of (k, 1) convolutions strided along time scores it, so each
sub-discriminator sees samples p apart — periodic structure a plain 1-D discriminator misses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from discotok.discriminators.base import DiscriminatorOutput
from discotok.registry import DISCRIMINATORS


class PeriodDiscriminator(nn.Module):
    """One period: (5, 1) convolutions with stride (3, 1), LeakyReLU(0.1), a (3, 1) conv to one logit map."""

    def __init__(self, period: int, in_channels: int, widths: Sequence[int], kernel_size: int = 5, stride: int = 3) -> None:
        super().__init__()
        self.period = period
        layers, width = [], in_channels
        for i, w in enumerate(widths):
            s = stride if i < len(widths) - 1 else 1
            layers.append(weight_norm(nn.Conv2d(width, w, (kernel_size, 1), (s, 1), padding=(kernel_size // 2, 0))))
            width = w
        self.convs = nn.ModuleList(layers)
        self.out = weight_norm(nn.Conv2d(width, 1, (3, 1), padding=(1, 0)))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        h = F.pad(x, (0, -x.shape[-1] % self.period))
        h = rearrange(h, "b c (t p) -> b c t p", p=self.period)
        features = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.1)
            features.append(h)
        logits = self.out(h)
        features.append(logits)
        return logits, features


@DISCRIMINATORS.register("mpd")
class MultiPeriodDiscriminator(nn.Module):
    """One ``PeriodDiscriminator`` per period (HiFi-GAN: 2, 3, 5, 7, 11; widths 32..1024)."""

    def __init__(
        self,
        in_channels: int = 1,
        periods: Sequence[int] = (2, 3, 5, 7, 11),
        widths: Sequence[int] = (32, 128, 512, 1024, 1024),
        kernel_size: int = 5,
        stride: int = 3,
    ) -> None:
        super().__init__()
        if not periods or any(int(p) < 1 for p in periods):
            raise ValueError(f"periods must be positive integers, got {list(periods)}")
        self.discriminators = nn.ModuleList(
            PeriodDiscriminator(int(p), in_channels, widths, kernel_size, stride) for p in periods
        )

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        """Waveforms (B, C, T) -> one logits map and one feature list per period."""
        outs = [d(x) for d in self.discriminators]
        return DiscriminatorOutput([o[0] for o in outs], [o[1] for o in outs])
