"""Resampling at any pair of rates: accuracy against torchaudio and a pure tone, memory bounded by the audio."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torchaudio.functional import resample as torchaudio_resample

from discotok.data.audio import AudioLoadError, load_audio
from discotok.data.resample import _resample_direct, output_length, phase_kernel_elements, resample


@pytest.mark.parametrize("rates", [(4001, 1000), (1000, 4001), (44100, 16000), (16000, 22050)])
def test_per_sample_taps_equal_torchaudios_precomputed_filter(rates: tuple[int, int]) -> None:
    x = torch.randn(2, 1, 12000)
    expected = torchaudio_resample(x, *rates)
    got = _resample_direct(x, *rates)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=5e-4, rtol=0)


@pytest.mark.parametrize("rates", [(44101, 16000), (16001, 24000), (7919, 16000)])
def test_coprime_rates_resample_a_tone_accurately(rates: tuple[int, int]) -> None:
    orig, new = rates
    assert phase_kernel_elements(orig, new) > 1 << 22  # torchaudio's filter here would be large
    tone = 0.5 * torch.sin(2 * math.pi * 440 * torch.arange(orig) / orig)  # one second of 440 Hz
    got = resample(tone[None], orig, new)[0]
    assert got.shape[-1] == output_length(orig, orig, new) == new
    reference = 0.5 * torch.sin(2 * math.pi * 440 * torch.arange(new) / new)
    inner = slice(new // 20, -new // 20)  # away from the zero-padded edges
    assert (got[inner] - reference[inner]).abs().max() < 1e-3  # measured 1.8e-4 .. 2.7e-4, as torchaudio at 44.1 kHz


def test_odd_rate_header_resamples_within_a_small_address_space_limit(tmp_path: Path) -> None:
    """A 16 KB wav declaring 44101 Hz: torchaudio's gcd-reduced filter would take 2.8 GB (9 GB at its peak)."""
    path = tmp_path / "odd.wav"
    t = np.arange(8000) / 44101
    sf.write(path, (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 44101, subtype="PCM_16")
    script = textwrap.dedent(f"""
        import resource, sys
        import torch
        torch.set_num_threads(1)
        from discotok.data.audio import load_audio
        vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.getrlimit(resource.RLIMIT_AS)[1]))
        wave, info = load_audio({str(path)!r}, 16000, 1)
        print(wave.shape[-1], info.source_sample_rate)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(output_length(8000, 44101, 16000)), "44101"]


def test_long_file_refused_from_its_header_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(8000 * 30, dtype=np.float32), 8000, subtype="PCM_16")
    with pytest.raises(AudioLoadError, match=r"long\.wav: 30\.0 s of audio .* over the limit of 20 s"):
        load_audio(path, 16000, 1, max_duration=20)
    wave, _ = load_audio(path, 16000, 1, max_duration=20, duration=10)  # a part within the limit is read
    assert wave.shape[-1] == 160000
