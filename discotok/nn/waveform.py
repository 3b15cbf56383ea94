"""Checks and masks of zero-padded waveform batches (B, C, T) with per-item lengths."""

from __future__ import annotations

import torch
from torch import Tensor

from discotok.nn.conv1d import apply_mask, length_mask


def check_audio_batch(x: Tensor, channels: int, multiple: int = 1) -> None:
    """Raise ``ValueError`` unless ``x`` is a float (B, channels, T) batch with ``multiple`` dividing T."""
    if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[1] != channels:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected waveforms of shape (B, {channels}, T), got {shape}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"waveforms must be floating point in [-1, 1], got {x.dtype}")
    if x.shape[-1] == 0 or x.shape[-1] % multiple:
        raise ValueError(f"waveform length must be a positive multiple of the hop {multiple}, got {x.shape[-1]}")


def check_lengths(lengths: Tensor, batch: int, total: int) -> Tensor:
    """``lengths`` as an int64 (B,) tensor with values in 1..total, else ``ValueError``."""
    lengths = torch.as_tensor(lengths)
    if lengths.shape != (batch,) or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be integers of shape ({batch},), got {lengths.dtype} {tuple(lengths.shape)}")
    if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > total):
        raise ValueError(f"lengths must lie in 1..{total} (the padded length), got {lengths.tolist()}")
    return lengths.long()


def mask_past(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Zero ``x`` (B, C, T) past each item's length (``lengths`` (B,) or None)."""
    return x if lengths is None else apply_mask(x, length_mask(lengths, x.shape[-1]))
