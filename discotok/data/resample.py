"""Band-limited resampling between any two integer rates, at memory in proportion to the audio.

The filter is torchaudio's (``torchaudio.functional.resample`` defaults): a sinc low-pass at
``rolloff`` (0.99) times the lower rate's Nyquist frequency, Hann-windowed over
``LOWPASS_FILTER_WIDTH`` (6) zero crossings. torchaudio precomputes one kernel per output phase
after reducing the rates by their gcd: ``new / g`` kernels of ``orig / g`` taps and more, which
for coprime rates (a header declaring 44101 Hz -> 16000 Hz) is a filter of gigabytes. Here, when
that precomputed filter would exceed ``MAX_KERNEL_ELEMENTS``, each output sample's taps are
evaluated for each output sample instead (the same formula in float64, so the same result up
to torchaudio's float32 rounding, about 1e-4 at most), only its 2 * width + 2 nonzero taps
(36 for 44.1 kHz -> 16 kHz), from a table of the ``new / g`` phases when that is small, in
chunks of at most about ``CHUNK_ELEMENTS`` gathered samples. Memory is then
O(input + output + chunk) whatever the rates, and the time O(output samples x taps).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor
from torchaudio.functional import resample as torchaudio_resample

LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99
MAX_KERNEL_ELEMENTS = 1 << 22
CHUNK_ELEMENTS = 1 << 22


def filter_width(orig_rate: int, new_rate: int) -> int:
    """Taps on each side of an output sample, in input samples (torchaudio's ``width``)."""
    g = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // g, new_rate // g
    return math.ceil(LOWPASS_FILTER_WIDTH * orig / (min(orig, new) * ROLLOFF))


def phase_kernel_elements(orig_rate: int, new_rate: int) -> int:
    """Elements of torchaudio's precomputed filter for these rates: (new / g) x (2 width + orig / g)."""
    g = math.gcd(orig_rate, new_rate)
    return new_rate // g * (2 * filter_width(orig_rate, new_rate) + orig_rate // g)


def output_length(num_samples: int, orig_rate: int, new_rate: int) -> int:
    """Samples that ``num_samples`` at ``orig_rate`` become at ``new_rate``: ceil(num_samples * new / orig)."""
    return -(-num_samples * new_rate // orig_rate)


def resample(wave: Tensor, orig_rate: int, new_rate: int) -> Tensor:
    """Resample float ``wave`` (..., T) from ``orig_rate`` to ``new_rate`` Hz (positive ints).

    Gives ``output_length(T, orig, new)`` samples; torchaudio's precomputed filter when it holds
    at most ``MAX_KERNEL_ELEMENTS``, else the same filter evaluated per output sample.
    """
    orig_rate, new_rate = int(orig_rate), int(new_rate)
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} and {new_rate}")
    if orig_rate == new_rate:
        return wave
    if phase_kernel_elements(orig_rate, new_rate) <= MAX_KERNEL_ELEMENTS:
        return torchaudio_resample(wave, orig_rate, new_rate)
    return _resample_direct(wave, orig_rate, new_rate)


def _phase_weights(phases: Tensor, new: int, orig: int, offsets: Tensor) -> Tensor:
    """Filter taps (len(phases), len(offsets)) for output samples at input position floor + phase / new."""
    base = min(orig, new) * ROLLOFF
    t = (offsets[None, :] - (phases.double() / new)[:, None]) * (base / orig)
    t = t.clamp(-LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH)
    window = torch.cos(t * (math.pi / LOWPASS_FILTER_WIDTH / 2)) ** 2
    return (torch.sinc(t) * window * (base / orig)).float()


def _resample_direct(wave: Tensor, orig_rate: int, new_rate: int) -> Tensor:
    """Windowed-sinc resampling with each output sample's taps computed when needed (a table of the
    ``new / g`` phases when it is small, else per chunk of output samples)."""
    g = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // g, new_rate // g
    rows = rearrange(wave, "... t -> (...) t")
    length = rows.shape[-1]
    width = min(filter_width(orig_rate, new_rate), length)  # taps past the signal would only meet zeros
    padded = torch.nn.functional.pad(rows, (width, width + 2))
    offsets = torch.arange(-width, width + 2, device=wave.device)
    taps = offsets.numel()
    table = None
    if new * taps <= MAX_KERNEL_ELEMENTS:
        table = _phase_weights(torch.arange(new, device=wave.device), new, orig, offsets).to(rows.dtype)
    total = output_length(length, orig, new)
    out = rows.new_empty(rows.shape[0], total)
    chunk = max(1, CHUNK_ELEMENTS // (taps * max(1, rows.shape[0])))
    for start in range(0, total, chunk):
        m = torch.arange(start, min(start + chunk, total), device=wave.device, dtype=torch.int64)
        floor, phases = torch.div(m * orig, new, rounding_mode="floor"), (m * orig) % new
        weights = table[phases] if table is not None else _phase_weights(phases, new, orig, offsets).to(rows.dtype)
        gathered = padded[:, floor[:, None] + offsets[None, :] + width]
        out[:, start : start + m.numel()] = torch.einsum("rct,ct->rc", gathered, weights)
    return out.reshape(*wave.shape[:-1], total)
