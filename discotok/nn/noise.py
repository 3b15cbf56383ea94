"""SNAC's noise block: ``x + noise * W x`` with fresh Gaussian noise per frame (one value shared by the channels).

The noise comes from torch's global generator, in eval mode too, as in SNAC: seed it
(``torch.manual_seed``) right before decoding for a reproducible waveform.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from discotok.nn.conv1d import Conv1d


class NoiseBlock(nn.Module):
    """(B, C, T) -> (B, C, T): adds ``randn(B, 1, T)`` times a bias-free, weight-normalised 1x1 convolution of x."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = Conv1d(channels, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        noise = torch.randn((x.shape[0], 1, x.shape[-1]), device=x.device, dtype=x.dtype)
        return x + noise * self.conv(x)
