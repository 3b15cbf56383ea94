"""Id perturbation: replace ids by one of their δ nearest codes (RobusTok's pFID; latent perturbation).

``perturb_ids(quantizer, ids, alpha, delta)`` picks each token with probability ``alpha``
and replaces its id by one drawn uniformly from the ``delta`` codes nearest to it (itself
excluded), distances taken in the quantizer's code space; among codes tied at the edge of
the δ nearest, the draw is uniform too. Neighbours per quantizer:

* ``vq`` (and any quantizer with a materialisable codebook, e.g. ``fsq``'s grid): exact
  search over the codebook (Euclidean; cosine codes are unit vectors, so the same order);
* ``fsq``: its grid, so the nearest codes are one step along a channel, then diagonals;
* ``lfq`` / ``binary``: bit flips — all single flips are tied nearest, then double flips, ...
  (never materialises the 2^bits codes);
* ``rvq``: each level independently, with that level's codebook.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from discotok.quantizers.base import Quantizer
from discotok.quantizers.binary import BinaryQuantizer
from discotok.quantizers.rvq import ResidualVQ

MAX_SEARCH_CODES = 1 << 22


def _codebook_neighbours(quantizer: Quantizer, ids: Tensor, delta: int, generator: torch.Generator) -> Tensor:
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


def _bit_flip_neighbours(ids: Tensor, bits: int, delta: int, generator: torch.Generator) -> Tensor:
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


def nearest_codes(quantizer: Quantizer, ids: Tensor, delta: int, generator: torch.Generator | None = None) -> Tensor:
    """For every id (any shape; (..., depth) for ``rvq``), one of its ``delta`` nearest other codes."""
    generator = generator or torch.Generator().manual_seed(0)
    ids = ids.long()
    if isinstance(quantizer, ResidualVQ):
        levels = [nearest_codes(quantizer.levels[d], ids[..., d], delta, generator) for d in range(ids.shape[-1])]
        return torch.stack(levels, dim=-1)
    flat = ids.reshape(-1)
    if isinstance(quantizer, BinaryQuantizer):
        out = _bit_flip_neighbours(flat, quantizer.bits, delta, generator)
    else:
        out = _codebook_neighbours(quantizer, flat, delta, generator)
    return out.reshape(ids.shape)


def perturb_ids(
    quantizer: Quantizer, ids: Tensor, alpha: float, delta: int, generator: torch.Generator | None = None
) -> Tensor:
    """Replace each id with probability ``alpha`` by one of its ``delta`` nearest codes (see the module docstring).

    For ``rvq`` ids (B, N, depth) every level of every token is drawn independently. Seeded by
    ``generator`` (CPU); returns a new tensor, ``ids`` are left unchanged.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    quantizer.check_ids(ids)
    generator = generator or torch.Generator().manual_seed(0)
    chosen = (torch.rand(ids.shape, generator=generator) < alpha).to(ids.device)
    out = ids.long().clone()
    if not bool(chosen.any()):
        return out
    if isinstance(quantizer, ResidualVQ):
        for d in range(ids.shape[-1]):
            mask = chosen[..., d]
            out[..., d][mask] = nearest_codes(quantizer.levels[d], ids[..., d][mask], delta, generator)
        return out
    out[chosen] = nearest_codes(quantizer, ids[chosen], delta, generator)
    return out
