"""Finite scalar quantization (Mentzer et al., 2023, https://arxiv.org/abs/2309.15505).

Each of the ``len(levels)`` code channels is bounded with a shifted tanh and rounded to
one of ``L`` levels. Channel ``i`` with ``L`` levels takes the values ``k / (L // 2)`` for
the integers ``k`` in ``[-(L // 2), (L - 1) // 2]``: symmetric {-1, ..., 1} for odd ``L``,
{-1, ..., 1 - 2/L} for even ``L``. This is vector-quantize-pytorch's ``FSQ`` with its
defaults (``preserve_symmetry=False``, no noise dropout, tanh bound with eps 1e-3), and
the ids are its mixed-radix ids (the first channel is the least significant digit).

Written here rather than wrapping the library's module because the contract needs exact
int64 ids (the library rounds a float sum to int32), float32 math under any autocast
(the library only turns off CUDA autocast) and no eagerly built implicit codebook; the
library is the oracle in ``tests/test_fsq.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from discotok.quantizers.base import Quantizer, QuantizerOutput, codebook_stats, straight_through
from discotok.quantizers.precision import full_precision
from discotok.registry import QUANTIZERS

BOUND_EPS = 1e-3


@QUANTIZERS.register("fsq")
class FSQ(Quantizer):
    """FSQ with ``code_dim = len(levels)`` and ``prod(levels)`` implicit codes.

    Args:
        dim: input/output dim; linear projections to/from ``len(levels)`` when different.
        levels: number of levels per code channel, each >= 3.
    """

    def __init__(self, dim: int, levels: Sequence[int] = (8, 5, 5, 5)) -> None:
        levels = [int(level) for level in levels]
        if not levels or any(level < 3 for level in levels):
            raise ValueError(
                f"fsq levels must be a non-empty list of ints >= 3, got {levels} "
                "(for two levels per channel use the 'binary' or 'lfq' quantizer)"
            )
        super().__init__(dim, len(levels))
        self.levels = levels
        self._codebook_size = math.prod(levels)
        if self._codebook_size > 2**62:
            raise ValueError(f"fsq levels {levels} give more than 2^62 codes")
        # integer buffers only, so model.half() / bf16-true training cannot round them
        # made from Python ints: arithmetic on the meta tensors of a shapes-only build would import torch._dynamo
        self.register_buffer("radix", torch.tensor(levels, dtype=torch.long), persistent=False)
        self.register_buffer("half_width", torch.tensor([level // 2 for level in levels]), persistent=False)
        basis = [math.prod(levels[:i]) for i in range(len(levels))]
        self.register_buffer("basis", torch.tensor(basis, dtype=torch.long), persistent=False)

    @property
    def codebook_size(self) -> int:
        return self._codebook_size

    def _bound_constants(self) -> tuple[Tensor, Tensor, Tensor]:
        """(half_l, shift, offset) of the bound, float32, computed once per device.

        Kept as a plain attribute rather than float buffers so that casting the model
        to bf16 cannot round them.
        """
        cached = self.__dict__.get("_bound_cache")
        if cached is None or cached[0].device != self.radix.device:
            with torch.inference_mode(False):  # made during inference, they must still serve training
                half_l = (self.radix - 1) * (1 + BOUND_EPS) / 2
                offset = (self.radix % 2 == 0) * 0.5
                cached = (half_l.float(), torch.atanh(offset / half_l).float(), offset.float())
            self.__dict__["_bound_cache"] = cached
        return cached

    def bound(self, h: Tensor) -> Tensor:
        """Squash ``h`` per channel (shifted tanh, the library's way) to just beyond the
        integer range [-(L // 2), (L - 1) // 2], so rounding yields exactly L levels."""
        half_l, shift, offset = self._bound_constants()
        return torch.tanh(h + shift) * half_l - offset

    @full_precision
    def quantize(self, h: Tensor) -> QuantizerOutput:
        """Quantize ``h`` of shape (B, N, len(levels)); ``loss`` is zero (FSQ has no aux loss)."""
        bounded = self.bound(h)
        digits = bounded.round()  # integers in [-(L // 2), (L - 1) // 2]
        z_q = straight_through(bounded / self.half_width, digits / self.half_width)
        ids = ((digits.long() + self.half_width) * self.basis).sum(dim=-1)
        loss = torch.zeros((), device=h.device)
        stats = codebook_stats(ids, self.codebook_size)
        return QuantizerOutput(z_q=z_q, ids=ids, loss=loss, stats=stats)

    def lookup(self, ids: Tensor) -> Tensor:
        """Code-space vectors (..., len(levels)) of ``ids`` (...), exactly what ``quantize`` gives."""
        digits = (ids.long().unsqueeze(-1) // self.basis) % self.radix
        return (digits - self.half_width) / self.half_width
