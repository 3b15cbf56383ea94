"""The ladder of operating points shared by evaluation and training validation (no heavy imports)."""

from __future__ import annotations

import math


def powers_of_two(n: int) -> list[int]:
    """1, 2, 4, ..., up to n, and n: the token counts or residual depths evaluated by default."""
    return sorted({*(2**i for i in range(int(math.log2(n)) + 1)), n})
