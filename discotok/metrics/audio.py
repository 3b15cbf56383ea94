"""Audio reconstruction metrics, one value per item of a (possibly padded) batch.

``mel_distance`` and ``stft_distance`` are the spectral distances of the ``audio`` loss
(``discotok.losses.spectral``); ``si_snr`` is torchmetrics' scale-invariant SNR in dB. PESQ
(wide band, at 16 kHz) and STOI come through torchmetrics from the ``pesq`` and ``pystoi``
packages: ``pip install "discotok[audio-metrics]"``. Each function takes ``x_hat`` and ``x``
(B, C, T) and optional ``lengths`` (B,): item b is compared over its first ``lengths[b]``
samples only.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from functools import lru_cache

import torch
from torch import Tensor
from torchaudio.functional import resample
from torchmetrics.functional.audio import scale_invariant_signal_noise_ratio

from discotok.losses.spectral import MultiResolutionSTFT, MultiScaleMel

EXTRA = 'pip install "discotok[audio-metrics]"'


def per_item(fn: Callable[[Tensor, Tensor], Tensor], x_hat: Tensor, x: Tensor, lengths: Tensor | None) -> Tensor:
    """``fn`` on each (1, C, length) item pair, or on the whole batch when ``lengths`` is None; (B,)."""
    if x_hat.shape != x.shape or x.ndim != 3:
        raise ValueError(f"expected matching (B, C, T) waveforms, got {tuple(x_hat.shape)} and {tuple(x.shape)}")
    x_hat, x = x_hat.detach().float(), x.detach().float()
    if lengths is None:
        return fn(x_hat, x)
    return torch.cat([fn(x_hat[i : i + 1, :, :n], x[i : i + 1, :, :n]) for i, n in enumerate(lengths.tolist())])


@lru_cache(maxsize=8)
def _mel(sample_rate: int) -> MultiScaleMel:
    return MultiScaleMel(sample_rate)


@lru_cache(maxsize=1)
def _stft() -> MultiResolutionSTFT:
    return MultiResolutionSTFT()


def mel_distance(x_hat: Tensor, x: Tensor, sample_rate: int, lengths: Tensor | None = None) -> Tensor:
    """Multi-scale log-mel L1 distance per item (B,) (lower is better; DAC's mel distance)."""
    mel = _mel(int(sample_rate)).to(x.device)
    return per_item(lambda a, b: mel(a, b, per_item=True), x_hat, x, lengths)


def stft_distance(x_hat: Tensor, x: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Multi-resolution STFT distance per item (B,): spectral convergence + log-magnitude L1."""
    stft = _stft().to(x.device)
    return per_item(lambda a, b: stft(a, b, per_item=True), x_hat, x, lengths)


def si_snr(x_hat: Tensor, x: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Scale-invariant SNR in dB per item (B,), averaged over channels (higher is better)."""
    return per_item(lambda a, b: scale_invariant_signal_noise_ratio(a, b).mean(dim=1), x_hat, x, lengths)


def require(package: str, metric: str) -> None:
    """``ImportError`` with the install command unless ``package`` is importable."""
    if importlib.util.find_spec(package) is None:
        raise ImportError(f"{metric} needs the '{package}' package, which is not installed: {EXTRA}")


def pesq(x_hat: Tensor, x: Tensor, sample_rate: int, lengths: Tensor | None = None) -> Tensor:
    """Wide-band PESQ per item (B,) on the channel mean resampled to 16 kHz (-0.5..4.5, higher is better)."""
    require("pesq", "PESQ")
    from torchmetrics.functional.audio import perceptual_evaluation_speech_quality

    def score(a: Tensor, b: Tensor) -> Tensor:
        a, b = (resample(v.mean(dim=1), int(sample_rate), 16000) for v in (a, b))
        return perceptual_evaluation_speech_quality(a, b, 16000, "wb").reshape(-1).float()

    return per_item(score, x_hat, x, lengths)


def stoi(x_hat: Tensor, x: Tensor, sample_rate: int, lengths: Tensor | None = None) -> Tensor:
    """STOI per item (B,) on the channel mean (0..1, higher is better)."""
    require("pystoi", "STOI")
    from torchmetrics.functional.audio import short_time_objective_intelligibility

    def score(a: Tensor, b: Tensor) -> Tensor:
        return short_time_objective_intelligibility(a.mean(dim=1), b.mean(dim=1), int(sample_rate)).reshape(-1).float()

    return per_item(score, x_hat, x, lengths)
