"""Inference precision: ``fp32``, ``bf16`` (autocast), ``int8`` (dynamic int8 linear layers, CPU) or ``auto``
(bf16 where the hardware runs it faster; never int8).

``Tokenizer.encode`` / ``decode`` (and ``discotok encode | decode | eval | bench``) run their
encoder and decoder under ``precision_context``; the quantizers keep their projection and
nearest-code search in float32 (``discotok.quantizers.precision``), so bf16 changes the ids only
where the encoder's bf16 rounding moves a latent across a boundary between two near codes. ``int8``
runs copies of the encoder and decoder whose linear layers are dynamically quantized
(``discotok.nn.int8``); it is CPU-only and chosen by name only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from discotok.defaults import PRECISIONS

# CPU flags under which ``auto`` picks bf16: AMX tiles. With AVX-512 BF16 alone (``avx512_bf16``, no AMX, as on
# this project's KVM guest) bf16 autocast measured 0.6-0.8x fp32's speed (docs/benchmarks/precision.md):
# VDPBF16PS issues on one port where fp32 FMAs use two, and autocast adds casts.
CPU_BF16_FLAGS = ("amx_bf16",)


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def bf16_supported(device: str | torch.device) -> bool:
    """Whether bf16 is faster than float32 on ``device``: a CUDA GPU that reports bf16 support, or a CPU with
    AMX-BF16 (``amx_bf16`` in ``/proc/cpuinfo``; ``torch.backends.cpu.get_cpu_capability()`` says only
    ``AVX512``). AVX-512 BF16 alone does not count: measured slower than float32 (``CPU_BF16_FLAGS``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(flag in cpu_flags() for flag in CPU_BF16_FLAGS)
    return False


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """``fp32``, ``bf16`` or ``int8``: ``auto`` becomes bf16 where ``bf16_supported(device)``, else fp32; int8 off
    the CPU and anything else are refused."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "int8" and torch.device(device).type != "cpu":
        raise ValueError(f"precision int8 (dynamic int8 linear layers) runs on the CPU only; the tokenizer is on "
                         f"{torch.device(device)}: use bf16 or fp32 there")
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return precision


@contextlib.contextmanager
def precision_context(precision: str, device: str | torch.device) -> Iterator[str]:
    """Run the block under bf16 autocast on ``device`` when ``precision`` resolves to bf16; yields the
    resolved precision. fp32 and int8 (whose int8 copies of the networks the caller runs) leave autocast as the
    caller set it."""
    resolved = resolve_precision(precision, device)
    device = torch.device(device)
    if resolved in ("fp32", "int8"):
        yield resolved
        return
    with torch.autocast(device.type, dtype=torch.bfloat16):
        yield resolved


def undo_autocast(t: Tensor) -> Tensor:
    """``t`` in float32 when autocast left it in bf16 or fp16; any other dtype (float32, float64) as it is."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t
