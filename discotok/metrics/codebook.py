"""Codebook usage and perplexity accumulated over many batches."""

from __future__ import annotations

import math

import torch
from torch import Tensor


class CodebookUsage:
    """Histogram of ids per level (ids (B, N) or (B, N, depth)), kept sparse.

    Only the ids seen are stored, so a 2^18 (or larger) vocabulary costs nothing extra.
    """

    def __init__(self, codebook_size: int) -> None:
        self.codebook_size = codebook_size
        self.seen: list[Tensor] = []
        self.counts: list[Tensor] = []

    def update(self, ids: Tensor) -> None:
        ids = ids.detach().cpu()
        levels = ids.reshape(-1, ids.shape[-1] if ids.ndim == 3 else 1)
        for level in range(levels.shape[1]):
            self._add(level, *torch.unique(levels[:, level], return_counts=True))

    def merge(self, other: CodebookUsage) -> None:
        """Add another histogram's counts (e.g. another DDP rank's) to this one."""
        for level, (seen, counts) in enumerate(zip(other.seen, other.counts)):
            self._add(level, seen, counts)

    def _add(self, level: int, values: Tensor, counts: Tensor) -> None:
        """Add ``counts`` of the ids ``values`` to one level's sparse histogram."""
        if level == len(self.seen):
            self.seen.append(torch.empty(0, dtype=torch.long))
            self.counts.append(torch.empty(0, dtype=torch.long))
        merged, inverse = torch.unique(torch.cat([self.seen[level], values]), return_inverse=True)
        total = torch.zeros(merged.numel(), dtype=torch.long)
        total.index_add_(0, inverse, torch.cat([self.counts[level], counts]))
        self.seen[level], self.counts[level] = merged, total

    def compute(self) -> dict[str, float]:
        """Mean over levels of the fraction of codes used and of the perplexity."""
        if not self.counts:
            return {"usage": 0.0, "perplexity": 0.0}
        usage, perplexity = [], []
        for counts in self.counts:
            p = counts.double() / counts.sum()
            usage.append(counts.numel() / self.codebook_size)
            perplexity.append(math.exp(float(-(p * p.log()).sum())))
        return {"usage": sum(usage) / len(usage), "perplexity": sum(perplexity) / len(perplexity)}
