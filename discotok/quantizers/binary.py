"""Binary (sign) quantization, optionally on the unit sphere (BSQ, https://arxiv.org/abs/2406.07548).

Each of the ``bits`` code channels becomes +s or -s (``s = 1``, or ``1 / sqrt(bits)``
with ``sphere=True`` so codes have unit norm); the id packs the signs big-endian (first
channel most significant, one for positive), as vector-quantize-pytorch's LFQ does, or
with ``bit_order="little"`` little-endian (first channel least significant), as
Open-MAGVIT2's LFQ does. Zero maps to +s (both libraries map it to -s; this only matters
for exact zeros).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from discotok.quantizers.base import Quantizer, QuantizerOutput, codebook_stats, straight_through
from discotok.quantizers.bits import MAX_BITS, bits_to_ids, ids_to_signs
from discotok.quantizers.neighbours import bit_flip_neighbours
from discotok.quantizers.precision import full_precision
from discotok.registry import QUANTIZERS

BIT_ORDERS = ("big", "little")


@QUANTIZERS.register("binary")
class BinaryQuantizer(Quantizer):
    """Sign quantizer with a straight-through gradient and a commitment loss.

    Args:
        dim: input/output dim; linear projections to/from ``bits`` when different.
        bits: code channels, so ``2 ** bits`` ids per token (at most 63).
        sphere: l2-normalise ``h`` first and emit ``sign(h) / sqrt(bits)`` (BSQ).
        commitment_weight: weight of ``mean((h - sg(q)) ** 2)`` (``h`` normalised if ``sphere``).
        bit_order: ``"big"`` (the first channel is the id's most significant bit) or ``"little"``
            (its least significant bit, Open-MAGVIT2's order).
    """

    def __init__(
        self, dim: int, bits: int = 16, sphere: bool = False, commitment_weight: float = 0.25,
        bit_order: str = "big",
    ) -> None:
        if not 1 <= bits <= MAX_BITS:
            raise ValueError(f"bits must lie in [1, {MAX_BITS}] so ids fit in int64, got {bits}")
        if bit_order not in BIT_ORDERS:
            raise ValueError(f"bit_order must be one of {BIT_ORDERS}, got {bit_order!r}")
        super().__init__(dim, bits)
        self.bit_order = bit_order
        self.bits = bits
        self.sphere = sphere
        self.commitment_weight = commitment_weight
        self.code_scale = 1 / math.sqrt(bits) if sphere else 1.0

    @property
    def codebook_size(self) -> int:
        return 2**self.bits

    @full_precision
    def quantize(self, h: Tensor) -> QuantizerOutput:
        """Quantize ``h`` of shape (B, N, bits); the loss adds ``aux_loss`` to the commitment."""
        if self.sphere:
            h = F.normalize(h, dim=-1)
        positive = h >= 0
        q = (positive.to(h.dtype) * 2 - 1) * self.code_scale
        ids = bits_to_ids(self.msb_first(positive))
        aux, stats = self.aux_loss(h)
        loss = self.commitment_weight * F.mse_loss(h, q) + aux
        stats = {**codebook_stats(ids, self.codebook_size), **stats}
        return QuantizerOutput(z_q=straight_through(h, q), ids=ids, loss=loss, stats=stats)

    def aux_loss(self, h: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Extra weighted loss on the (normalised) code-space input, plus detached stats; none here."""
        return h.new_zeros(()), {}

    def nearest_codes(self, ids: Tensor, delta: int, generator: torch.Generator) -> Tensor:
        """Bit flips: all single flips are tied nearest, then double flips, ... (never materialises 2^bits codes)."""
        return bit_flip_neighbours(ids.reshape(-1), self.bits, delta, generator).reshape(ids.shape)

    def lookup(self, ids: Tensor) -> Tensor:
        """Code-space vectors (..., bits) of ``ids`` (...): ±1, or ±1/sqrt(bits) with ``sphere``."""
        return self.msb_first(ids_to_signs(ids, self.bits)) * self.code_scale

    def msb_first(self, bits: Tensor) -> Tensor:
        """Code channels (..., bits) in the id's big-endian order, or back (the reordering is its own inverse)."""
        return bits.flip(-1) if self.bit_order == "little" else bits
