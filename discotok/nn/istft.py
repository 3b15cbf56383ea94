"""Inverse STFT with "same" padding (Vocos / WavTokenizer's ``ISTFT(padding="same")``).

``torch.istft`` only trims ``n_fft / 2`` samples from each side (``center=True``); "same" trims
``(n_fft - hop) / 2``, as a convolution of that kernel and stride would pad, so N columns still give
N * hop samples but a quarter hop earlier than centred. ``torch.istft`` cannot do it (its NOLA check fails at
the untrimmed edges), hence the explicit inverse FFT, windowed overlap-add and envelope normalisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import repeat
from torch import Tensor


def istft_same(spec: Tensor, n_fft: int, hop_length: int, window: Tensor) -> Tensor:
    """Complex columns (B, n_fft / 2 + 1, N) -> (B, N * hop_length) samples (Hann ``window`` of length n_fft)."""
    if (n_fft - hop_length) % 2:
        raise ValueError(f"same padding needs n_fft - hop_length even, got n_fft={n_fft}, hop_length={hop_length}")
    pad = (n_fft - hop_length) // 2
    n = spec.shape[-1]
    frames = torch.fft.irfft(spec, n_fft, dim=1, norm="backward") * window[None, :, None]
    size = (1, (n - 1) * hop_length + n_fft)
    fold = dict(output_size=size, kernel_size=(1, n_fft), stride=(1, hop_length))
    keep = slice(pad, size[1] - pad)
    wave = F.fold(frames, **fold)[:, 0, 0, keep]
    envelope = F.fold(repeat(window.square(), "w -> 1 w n", n=n), **fold)[0, 0, 0, keep]
    return wave / envelope
