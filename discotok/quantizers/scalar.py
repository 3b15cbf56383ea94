"""``scalar``: per-dimension scalar quantization with fitted levels (post-training quantization, TokenBridge).

Dimension d has ``levels[d]`` reconstruction values ``centers[d, 0] < ... < centers[d, L-1]``
and ``L - 1`` increasing decision boundaries; a value takes the index of the first boundary
it does not exceed (``searchsorted``), i.e. bin i is ``(b[i-1], b[i]]``. The id of a token
packs its per-dimension indices in mixed radix, first dimension least significant (as
``fsq``), so ``codebook_size = prod(levels)``.

The centres and boundaries are buffers (saved in ``model.safetensors``); the config holds
only ``dim`` and ``levels``. A fresh quantizer is the uniform grid on [-1, 1] (FSQ-like);
``fit(latents, method)`` fits it to data (``discotok quantize-after``):

* ``quantile``: boundaries at the i/L quantiles (equal-mass bins), centres the bin means;
* ``lloyd``: Lloyd-Max from the quantile start — boundaries at midpoints of the centres,
  centres at the bin means, repeated (minimises the squared error per dimension);
* ``uniform``: FSQ with a fitted scale and offset — L evenly spaced centres between the
  0.1% and 99.9% quantiles, boundaries at the midpoints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor

from discotok.defaults import FIT_METHODS
from discotok.quantizers.base import Quantizer, QuantizerOutput, codebook_stats, straight_through
from discotok.quantizers.precision import full_precision
from discotok.registry import QUANTIZERS

UNIFORM_TAILS = 1e-3


@QUANTIZERS.register("scalar")
class ScalarQuantizer(Quantizer):
    """Per-dimension scalar quantizer: ``levels`` (one per dim, or one for all) of fitted values.

    Args:
        dim: input/output dim (no projections: each dimension is quantized on its own).
        levels: levels per dimension (each >= 2); a single value applies to every dimension.
    """

    def __init__(self, dim: int, levels: Sequence[int] = (8,)) -> None:
        super().__init__(dim, dim)
        levels = [int(level) for level in levels]
        levels = levels * dim if len(levels) == 1 else levels
        if len(levels) != dim or any(level < 2 for level in levels):
            raise ValueError(f"scalar levels must be one int >= 2 or {dim} of them (one per dimension), got {levels}")
        if sum(math.log2(level) for level in levels) > 62:
            raise ValueError(f"scalar levels {levels} give more than 2^62 codes per token; use fewer levels")
        self.levels = levels
        self._codebook_size = math.prod(levels)
        widest = max(levels)
        radix = torch.tensor(levels, dtype=torch.long)
        self.register_buffer("radix", radix, persistent=False)
        self.register_buffer("basis", torch.cumprod(torch.tensor([1] + levels[:-1]), dim=0), persistent=False)
        self.register_buffer("centers", torch.zeros(dim, widest))
        self.register_buffer("boundaries", torch.full((dim, widest - 1), math.inf))
        for d, level in enumerate(levels):
            centers = torch.linspace(-1.0, 1.0, level)
            self.set_levels(d, centers, (centers[1:] + centers[:-1]) / 2)

    @property
    def codebook_size(self) -> int:
        return self._codebook_size

    @torch.no_grad()
    def set_levels(self, d: int, centers: Tensor, boundaries: Tensor) -> None:
        """Set dimension ``d``'s centres (L,) and boundaries (L-1,), made consistent in float32:
        boundaries strictly increasing and each centre inside its bin ``(b[i-1], b[i]]``."""
        level = self.levels[d]
        if centers.shape != (level,) or boundaries.shape != (level - 1,):
            raise ValueError(f"dimension {d} needs {level} centres and {level - 1} boundaries")
        b = boundaries.float().clone()
        for i in range(1, level - 1):
            b[i] = torch.maximum(b[i], torch.nextafter(b[i - 1], torch.tensor(math.inf)))
        c = centers.float().clone()
        lower = torch.cat([torch.tensor([-math.inf]), torch.nextafter(b, torch.tensor(math.inf))])
        upper = torch.cat([b, torch.tensor([math.inf])])
        c = torch.minimum(torch.maximum(c, lower), upper)
        self.centers[d, :level] = c.to(self.centers.device)
        self.boundaries[d, : level - 1] = b.to(self.boundaries.device)

    def digits(self, h: Tensor) -> Tensor:
        """Per-dimension level indices (..., dim) of values ``h`` (..., dim)."""
        flat = rearrange(h, "... d -> d (...)").contiguous()
        index = torch.searchsorted(self.boundaries.float().contiguous(), flat.float())
        return index.T.reshape(h.shape)

    @full_precision
    def quantize(self, h: Tensor) -> QuantizerOutput:
        """Quantize ``h`` (B, N, dim) to the nearest-bin centres; no loss (the levels are fitted, not learned)."""
        digits = self.digits(h)
        ids = (digits * self.basis).sum(dim=-1)
        q = self._centres_of(digits)
        return QuantizerOutput(straight_through(h, q), ids, h.new_zeros(()), codebook_stats(ids, self.codebook_size))

    def _centres_of(self, digits: Tensor) -> Tensor:
        """Centre values (..., dim) of per-dimension indices (..., dim)."""
        flat = rearrange(digits, "... d -> d (...)")
        return self.centers.float().gather(1, flat).T.reshape(digits.shape)

    def lookup(self, ids: Tensor) -> Tensor:
        """Code-space vectors (..., dim) of ``ids`` (...), exactly what ``quantize`` gives."""
        return self._centres_of((ids.long().unsqueeze(-1) // self.basis) % self.radix)

    @torch.no_grad()
    def fit(self, latents: Tensor, method: str = "lloyd", iterations: int = 30) -> dict[str, float]:
        """Fit every dimension's levels to ``latents`` (M, dim) with ``method``; returns the mean
        squared quantization error before (the current levels) and after, per value."""
        if method not in FIT_METHODS:
            raise ValueError(f"fit method must be one of {FIT_METHODS}, got {method!r}")
        latents = latents.detach().reshape(-1, self.dim).float().cpu()
        if latents.shape[0] < max(self.levels):
            raise ValueError(f"fitting {max(self.levels)} levels needs at least that many latents, got {latents.shape[0]}")
        if not torch.isfinite(latents).all():
            raise ValueError("the latents hold NaN or infinite values")
        before = self.mse(latents)
        for d, level in enumerate(self.levels):
            centers, boundaries = fit_dimension(latents[:, d].sort().values, level, method, iterations)
            self.set_levels(d, centers, boundaries)
        return {"mse_before": before, "mse_after": self.mse(latents)}

    def mse(self, latents: Tensor) -> float:
        """Mean squared error of quantizing ``latents`` (M, dim) with the current levels."""
        latents = latents.to(self.centers.device).float()
        return float((self._centres_of(self.digits(latents)) - latents).pow(2).mean())


def bin_means(values: Tensor, boundaries: Tensor) -> tuple[Tensor, Tensor]:
    """Means and counts of sorted ``values`` in the bins ``(b[i-1], b[i]]`` of increasing ``boundaries``."""
    ends = torch.searchsorted(values, boundaries, right=True)
    ends = torch.cat([torch.zeros(1, dtype=torch.long), ends, torch.tensor([values.numel()])])
    sums = torch.cat([torch.zeros(1, dtype=values.dtype), values.cumsum(0)])
    counts = ends[1:] - ends[:-1]
    means = (sums[ends[1:]] - sums[ends[:-1]]) / counts.clamp(min=1)
    return means, counts


def fit_dimension(values: Tensor, level: int, method: str, iterations: int = 30) -> tuple[Tensor, Tensor]:
    """Centres (L,) and boundaries (L-1,) for the sorted ``values`` of one dimension (float64 math)."""
    x = values.double()
    if method == "uniform":
        lo, hi = (x[round(q * (x.numel() - 1))] for q in (UNIFORM_TAILS, 1 - UNIFORM_TAILS))
        centers = torch.linspace(float(lo), float(hi), level, dtype=torch.float64)
        return centers, (centers[1:] + centers[:-1]) / 2
    positions = (torch.arange(1, level, dtype=torch.float64) / level * (x.numel() - 1)).round().long()
    boundaries = x[positions]
    for step in range(iterations if method == "lloyd" else 1):
        means, counts = bin_means(x, boundaries)
        # an empty bin keeps the centre at its upper boundary (inside the bin, within the data range)
        upper = torch.cat([boundaries, x[-1:]])
        centers = torch.where(counts > 0, means, upper)
        if method == "quantile" or step == iterations - 1:
            break
        new = (centers[1:] + centers[:-1]) / 2
        if torch.equal(new, boundaries):
            break
        boundaries = new
    return centers, boundaries
