"""Nearest other codes of ids: exact search over a codebook, or bit flips of binary codes.

Used by ``Quantizer.nearest_codes`` (each quantizer picks the search that fits its code space)
for id perturbation (``discotok.quantizers.perturb``). Among codes tied at the edge of the
delta nearest, the draw is uniform.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

MAX_SEARCH_CODES = 1 << 22


def codebook_neighbours(quantizer: nn.Module, ids: Tensor, delta: int, generator: torch.Generator) -> Tensor:
    """For each id (M,), one of its ``delta`` nearest other codes, by exact search over the codebook."""
    k = quantizer.codebook_size
    if k > MAX_SEARCH_CODES:
        raise ValueError(f"{type(quantizer).__name__} has {k} codes; too many for an exact neighbour search")
    if not 1 <= delta < k:
        raise ValueError(f"delta must lie in 1..{k - 1} (other codes of the codebook), got {delta}")
    all_codes = quantizer.lookup(torch.arange(k, device=ids.device)).float()
    picked = torch.empty_like(ids)
    rows = max(1, min(256, (1 << 22) // k))  # at most 4 M distances at a time
    for start in range(0, ids.numel(), rows):
        chunk = ids[start : start + rows]
        dist = torch.cdist(all_codes[chunk], all_codes)
        dist[torch.arange(chunk.numel()), chunk] = math.inf
        # Randomly permuted columns + a stable sort: ties at the δ-th distance are broken uniformly.
        perm = torch.randperm(k, generator=generator, device="cpu").to(ids.device)
        order = torch.sort(dist[:, perm], dim=1, stable=True).indices[:, :delta]
        choice = torch.randint(delta, (chunk.numel(), 1), generator=generator, device="cpu").to(ids.device)
        picked[start : start + rows] = perm[order.gather(1, choice).squeeze(1)]
    return picked


def bit_flip_neighbours(ids: Tensor, bits: int, delta: int, generator: torch.Generator) -> Tensor:
    """One of the ``delta`` nearest codes of each id under Hamming distance (all flips of h bits tie)."""
    if not 1 <= delta < 2**bits:
        raise ValueError(f"delta must lie in 1..{2**bits - 1}, got {delta}")
    counts = [math.comb(bits, h) for h in range(1, bits + 1)]
    # Rank j in [0, delta) uniformly; its distance h is where the cumulative counts pass j.
    rank = torch.randint(delta, (ids.numel(),), generator=generator)
    cumulative = torch.tensor(counts).cumsum(0)
    flips = torch.searchsorted(cumulative, rank, right=True) + 1
    scores = torch.rand(ids.numel(), bits, generator=generator)
    chosen = scores.argsort(dim=1) < flips.unsqueeze(1)  # ``flips`` random distinct bit positions per id
    masks = (chosen.long() << torch.arange(bits - 1, -1, -1)).sum(1)
    return ids ^ masks.to(ids.device)
