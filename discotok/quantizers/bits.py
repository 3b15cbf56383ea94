"""Pack bits into integer ids and back, big-endian (the first bit is the most significant).

This is the packing vector-quantize-pytorch's LFQ uses, so ids agree with it. Ids are
int64, so up to 63 bits fit without overflow.
"""

from __future__ import annotations

import torch
from torch import Tensor

MAX_BITS = 63
FLOAT_EXACT_BITS = 24


def _shifts(num_bits: int, device: torch.device) -> Tensor:
    if not 0 <= num_bits <= MAX_BITS:
        raise ValueError(f"num_bits must lie in [0, {MAX_BITS}] to fit int64 ids, got {num_bits}")
    return torch.arange(num_bits - 1, -1, -1, device=device, dtype=torch.long)


def bits_to_ids(bits: Tensor) -> Tensor:
    """Pack bits along the last dim into int64 ids, first bit most significant.

    ``bits`` may be {0, 1} (any dtype, bool included) or ±1: an entry counts as a one
    where it is > 0. Shape (..., num_bits) -> (...).
    """
    shifts = _shifts(bits.shape[-1], bits.device)
    ones = bits if bits.dtype == torch.bool else bits > 0
    if bits.shape[-1] <= FLOAT_EXACT_BITS:
        # sums of distinct powers of two below 2^24 are exact in float32, and a matmul is fast
        return (ones.float() @ torch.exp2(shifts.float())).long()
    return torch.bitwise_left_shift(ones.long(), shifts).sum(dim=-1)


def ids_to_bits(ids: Tensor, num_bits: int) -> Tensor:
    """Unpack int ids of shape (...) into bool bits of shape (..., num_bits), big-endian."""
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"ids must have an integer dtype, got {ids.dtype}")
    shifts = _shifts(num_bits, ids.device)
    return torch.bitwise_right_shift(ids.long().unsqueeze(-1), shifts).bitwise_and(1).bool()


def ids_to_signs(ids: Tensor, num_bits: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Unpack ids into ±1 values of shape (..., num_bits): bit 1 -> +1, bit 0 -> -1."""
    return ids_to_bits(ids, num_bits).to(dtype) * 2 - 1
