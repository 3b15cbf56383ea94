"""Random draws that every DDP rank makes identically, without communication."""

from __future__ import annotations

import torch


def step_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator seeded by ``(seed, step)``: the same draws on every rank and after a resume.

    The CPU generator keeps only 32 bits of its seed, so the pair is folded into them.
    """
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % (1 << 32))
