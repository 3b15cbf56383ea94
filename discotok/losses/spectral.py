"""Spectral distances between waveforms, shared by the ``audio`` loss and the audio metrics.

* ``MultiScaleMel``: L1 between log10 mel spectrograms at several window sizes, each with its
  own number of mel bands (DAC: windows 32..2048, 5..320 bands, hop = window / 4).
* ``MultiResolutionSTFT``: spectral convergence plus L1 of log magnitudes at several FFT
  sizes (Parallel WaveGAN; hop = n_fft / 4, Hann window of n_fft).

Both take (B, C, T) waveforms (channels folded into the batch) and pad with zeros, so any
length works; ``per_item=True`` returns one value per batch item instead of the mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn
from torchaudio.transforms import MelSpectrogram

MEL_WINDOWS = (32, 64, 128, 256, 512, 1024, 2048)
MEL_BANDS = (5, 10, 20, 40, 80, 160, 320)
STFT_SIZES = (512, 1024, 2048)


def fold_channels(x: Tensor) -> Tensor:
    """(B, C, T) -> (B*C, T) in float32 (spectra in bf16 are too coarse for a loss)."""
    if x.ndim != 3:
        raise ValueError(f"expected waveforms of shape (B, C, T), got {tuple(x.shape)}")
    return rearrange(x.float(), "b c t -> (b c) t")


def reduce_items(d: Tensor, batch: int, per_item: bool) -> Tensor:
    """Mean of ``d`` (B*C, ...) over everything, or per batch item (B,)."""
    return d.reshape(batch, -1).mean(dim=1) if per_item else d.mean()


class MultiScaleMel(nn.Module):
    """Mean over scales of ``|log10(mel(x̂) ∨ eps) - log10(mel(x) ∨ eps)|`` (magnitude mels)."""

    def __init__(
        self,
        sample_rate: int,
        windows: Sequence[int] = MEL_WINDOWS,
        bands: Sequence[int] = MEL_BANDS,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if len(windows) != len(bands) or not windows:
            raise ValueError(f"need one mel band count per window, got windows={list(windows)}, bands={list(bands)}")
        self.eps = eps
        self.mels = nn.ModuleList(
            MelSpectrogram(
                sample_rate, n_fft=w, win_length=w, hop_length=max(1, w // 4), n_mels=m, power=1.0,
                pad_mode="constant", norm="slaney", mel_scale="slaney",
            )
            for w, m in zip(windows, bands, strict=True)
        )

    def forward(self, x_hat: Tensor, x: Tensor, per_item: bool = False) -> Tensor:
        a, b = fold_channels(x_hat), fold_channels(x)
        total = 0.0
        for mel in self.mels:
            la = mel(a).clamp(min=self.eps).log10()
            lb = mel(b).clamp(min=self.eps).log10()
            total = total + reduce_items((la - lb).abs(), x.shape[0], per_item)
        return total / len(self.mels)


class MultiResolutionSTFT(nn.Module):
    """Mean over FFT sizes of spectral convergence + mean |log|X̂| - log|X||."""

    def __init__(self, fft_sizes: Sequence[int] = STFT_SIZES, eps: float = 1e-7) -> None:
        super().__init__()
        if not fft_sizes:
            raise ValueError("fft_sizes must name at least one FFT size")
        self.fft_sizes = [int(n) for n in fft_sizes]
        self.eps = eps
        for n in self.fft_sizes:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def magnitude(self, x: Tensor, n_fft: int) -> Tensor:
        window = getattr(self, f"window_{n_fft}")
        spec = torch.stft(x, n_fft, n_fft // 4, window=window, center=True, pad_mode="constant", return_complex=True)
        return spec.abs().clamp(min=self.eps)

    def forward(self, x_hat: Tensor, x: Tensor, per_item: bool = False) -> Tensor:
        a, b = fold_channels(x_hat), fold_channels(x)
        batch = x.shape[0]
        total = 0.0
        for n in self.fft_sizes:
            ma, mb = self.magnitude(a, n), self.magnitude(b, n)
            diff = (ma - mb).square().reshape(batch, -1).sum(1).sqrt()
            ref = mb.square().reshape(batch, -1).sum(1).sqrt()
            convergence = diff / ref.clamp(min=self.eps)
            log_mag = reduce_items((ma.log() - mb.log()).abs(), batch, True)
            total = total + convergence + log_mag
        total = total / len(self.fft_sizes)
        return total if per_item else total.mean()
