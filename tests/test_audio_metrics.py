"""Audio metrics: SI-SNR, mel and STFT distances per item over valid lengths; PESQ / STOI through the extra."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from discotok.data.speech import espeak_binary
from discotok.metrics import audio as metrics
from tests.conftest import AUDIO_RATE


def pair(speech_clips, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.stack([c[:, :8000] for c in speech_clips[:2]])
    g = torch.Generator().manual_seed(0)
    return x + noise * torch.randn(x.shape, generator=g), x


def test_distances_order_reconstructions_by_quality(speech_clips):
    clean, x = pair(speech_clips, 0.0)
    slight, _ = pair(speech_clips, 0.005)
    heavy, _ = pair(speech_clips, 0.05)
    for fn in (lambda a, b: metrics.mel_distance(a, b, AUDIO_RATE), metrics.stft_distance):
        d0, d1, d2 = fn(clean, x), fn(slight, x), fn(heavy, x)
        assert d0.shape == (2,) and torch.all(d0 < 1e-5) and torch.all(d1 < d2) and torch.all(d1 > 0)
    s1, s2 = metrics.si_snr(slight, x), metrics.si_snr(heavy, x)
    assert torch.all(s1 > s2 + 10)  # ten times the noise: 20 dB less
    torch.testing.assert_close(metrics.si_snr(0.3 * slight, x), s1)  # scale invariant


def test_lengths_limit_the_comparison(speech_clips):
    slight, x = pair(speech_clips, 0.005)
    junk = slight.clone()
    junk[..., 6000:] = 1.0
    lengths = torch.tensor([6000, 6000])
    for fn in (metrics.si_snr, metrics.stft_distance, lambda a, b, n: metrics.mel_distance(a, b, AUDIO_RATE, n)):
        torch.testing.assert_close(fn(junk, x, lengths), fn(slight, x, lengths))
        assert not torch.allclose(fn(junk, x, None), fn(slight, x, None))


@pytest.mark.skipif(importlib.util.find_spec("pesq") is None or importlib.util.find_spec("pystoi") is None,
                    reason="the audio-metrics extra (pesq, pystoi) is not installed")
def test_pesq_and_stoi(speech_clips):
    slight, x = pair(speech_clips, 0.002)
    heavy, _ = pair(speech_clips, 0.05)
    assert torch.all(metrics.pesq(slight, x, AUDIO_RATE) > metrics.pesq(heavy, x, AUDIO_RATE))
    lengths = torch.tensor([8000, 7000])
    stoi = metrics.stoi(slight, x, AUDIO_RATE, lengths)
    assert stoi.shape == (2,) and torch.all(stoi > metrics.stoi(heavy, x, AUDIO_RATE, lengths))
    if espeak_binary() is not None:  # intelligibility is a speech measure: the synthetic fallback scores lower
        assert torch.all(stoi > 0.9)


def test_missing_extra_names_the_install_command(monkeypatch, speech_clips):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    x = speech_clips[0][None, :, :4000]
    with pytest.raises(ImportError, match=r"pip install \"discotok\[audio-metrics\]\""):
        metrics.pesq(x, x, AUDIO_RATE)
    with pytest.raises(ImportError, match="pystoi"):
        metrics.stoi(x, x, AUDIO_RATE)
