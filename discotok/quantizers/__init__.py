"""Quantizers: one file each, one contract (``QuantizerOutput``), built by registered name."""

from discotok.quantizers import binary, fsq, lfq  # noqa: F401  (registers fsq, binary, lfq)
from discotok.quantizers import identity, rvq, scalar, vq  # noqa: F401  (registers identity, vq, rvq, scalar)
from discotok.quantizers import split_rvq  # noqa: F401  (registers split_rvq)
from discotok.quantizers.base import NonFiniteError, Quantizer, QuantizerOutput, codebook_stats, straight_through
from discotok.quantizers.bits import bits_to_ids, ids_to_bits
from discotok.registry import QUANTIZERS

__all__ = ["QUANTIZERS", "NonFiniteError", "Quantizer", "QuantizerOutput", "codebook_stats", "straight_through"]
__all__ += ["bits_to_ids", "ids_to_bits"]
