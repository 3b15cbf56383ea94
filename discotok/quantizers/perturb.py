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

import torch
from torch import Tensor

from discotok.quantizers.base import Quantizer

def nearest_codes(quantizer: Quantizer, ids: Tensor, delta: int, generator: torch.Generator | None = None) -> Tensor:
    """For every id (any shape; (..., depth) for ``rvq``), one of its ``delta`` nearest other codes
    (``Quantizer.nearest_codes``: each quantizer knows its own neighbourhood)."""
    return quantizer.nearest_codes(ids.long(), delta, generator or torch.Generator().manual_seed(0))


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
    return quantizer.perturb_chosen(out, chosen, delta, generator)
