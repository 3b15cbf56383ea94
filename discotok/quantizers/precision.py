"""Run quantization math in full precision, whatever autocast is doing around it."""

from __future__ import annotations

from functools import wraps
from typing import Callable, TypeVar

import torch
from torch import Tensor, nn

F = TypeVar("F", bound=Callable[..., object])


def full_precision(fn: F) -> F:
    """Decorate ``fn(self, h, ...)``: run it with autocast off and ``h`` in float32 (float64 kept).

    Quantization and entropy math are sensitive to bf16/fp16 rounding; the returned
    ``QuantizerOutput.z_q`` is cast back to the dtype ``h`` came in.
    """

    @wraps(fn)
    def inner(self, h: Tensor, *args, **kwargs):
        dtype = h.dtype
        with torch.autocast(h.device.type, enabled=False):
            out = fn(self, h if dtype == torch.float64 else h.float(), *args, **kwargs)
        out.z_q = out.z_q.to(dtype)
        return out

    return inner  # type: ignore[return-value]


def in_full_precision(module: nn.Module, h: Tensor) -> Tensor:
    """``module(h)`` with autocast off and ``h`` in float32 (float64 kept): a quantizer's input projection,
    so that bf16 autocast around the encoder does not round the vectors the nearest-code search sees."""
    with torch.autocast(h.device.type, enabled=False):
        return module(h if h.dtype == torch.float64 else h.float())
