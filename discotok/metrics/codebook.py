"""Codebook usage and perplexity accumulated over many batches."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from discotok.quantizers.rvq import shares_removed


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


class ResidualShares:
    """Per-level residual figures of a residual quantizer accumulated over many batches.

    ``update`` takes ``ResidualVQ.residual_energies`` (B, N, k + 1): each token's squared
    residual before level 1 and after each of k levels, and optionally ``frames`` (B,), the
    valid tokens per item (the rest is padding). ``compute`` sums over every valid token.
    """

    def __init__(self) -> None:
        self.total: Tensor | None = None

    def update(self, energies: Tensor, frames: Tensor | None = None) -> None:
        energies = energies.detach().double().cpu()
        if frames is not None:
            valid = torch.arange(energies.shape[1])[None] < frames.cpu()[:, None]
            energies = energies * valid[..., None]
        summed = energies.sum(dim=(0, 1))
        self.total = summed if self.total is None else self.total + summed

    def compute(self) -> dict[str, float | list[float]]:
        """``residual_share``: per level, the share of the squared residual reaching it that it removes;
        ``residual_left``: squared residual after the last level over that of the quantizer's input."""
        if self.total is None:
            return {"residual_share": [], "residual_left": float("nan")}
        shares = shares_removed(self.total)
        return {"residual_share": [round(float(s), 6) for s in shares],
                "residual_left": float(self.total[-1] / self.total[0].clamp(min=1e-30))}
