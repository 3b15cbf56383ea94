"""Dynamic int8 inference of linear layers (``precision="int8"``, CPU).

``int8_copy`` copies a module and swaps each ``nn.Linear`` for torch's dynamically quantized one:
int8 weights (one scale per tensor), activations quantized per call from their own range, int8
matrix products on the x86 VNNI kernels (fbgemm), float32 out. Convolutions, norms and everything
else stay float32, so a network without linear layers is unchanged. ViT encoders are mostly linear
layers: TiTok-S-128 encoded 1.95x and decoded 2.04x faster than in fp32, TiTok-B-64 2.24x / 2.25x, on this
project's 2-core CPU (docs/benchmarks/precision.md). The quantizer is never copied: its projections and nearest-code
search stay float32.

This uses ``torch.ao.quantization.quantize_dynamic``, which torch marks deprecated in favour of torchao;
torchao 0.18's int8 dynamic-activation config ran slower than float32 here (no VNNI kernel on CPU), so the
torch one is kept, with its deprecation warning silenced here only.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


def has_linear(module: nn.Module) -> bool:
    """Whether ``module`` holds any ``nn.Linear`` (the layers int8 inference quantizes)."""
    return any(isinstance(m, nn.Linear) for m in module.modules())


def int8_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose ``nn.Linear`` layers run as dynamic int8 (CPU only); ``module`` is untouched."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.ao.quantization")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(module), {nn.Linear}, dtype=torch.qint8)
