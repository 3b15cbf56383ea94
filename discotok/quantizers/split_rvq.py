"""Split residual vector quantizer (Mimi): a semantic RVQ group and an acoustic RVQ group side by side."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from discotok.quantizers.base import Quantizer, QuantizerOutput
from discotok.quantizers.precision import full_precision
from discotok.quantizers.rvq import ResidualVQ
from discotok.registry import QUANTIZERS


@QUANTIZERS.register("split_rvq")
class SplitResidualVQ(Quantizer):
    """Two ``rvq`` groups that both code the input: ``semantic_depth`` semantic levels (Mimi: 1, distilled from
    WavLM in training) and ``depth - semantic_depth`` acoustic levels. Each group has its own projections to its
    ``code_dim`` code space; the output is the sum of both groups' outputs.

    Ids are (B, N, k) with the semantic levels first; ``depth=k`` counts levels across both groups (the first
    ``min(k, semantic_depth)`` semantic levels, then the first ``k - semantic_depth`` acoustic ones), so any
    prefix of the ids is a lower bit-rate code (transformers' Mimi refuses fewer than the semantic levels). In
    training, quantizer dropout draws the acoustic group's depth only. ``loss`` is the sum of the groups' losses.
    The other keyword arguments go to both groups' ``ResidualVQ`` (``codebook_size``, ``ema``, ``decay``,
    ``commitment_weight``, ...).
    """

    def __init__(
        self,
        dim: int,
        depth: int = 8,
        semantic_depth: int = 1,
        code_dim: int | None = None,
        quantizer_dropout: float = 0.5,
        seed: int = 0,
        **levels: Any,
    ) -> None:
        super().__init__(dim, dim)
        if not 1 <= semantic_depth < depth:
            raise ValueError(f"need 1 <= semantic_depth < depth, got semantic_depth={semantic_depth}, depth={depth}")
        self.depth = depth
        self.semantic_depth = semantic_depth
        self.semantic = ResidualVQ(dim, semantic_depth, code_dim=code_dim, quantizer_dropout=0.0, seed=seed, **levels)
        self.acoustic = ResidualVQ(dim, depth - semantic_depth, code_dim=code_dim, quantizer_dropout=quantizer_dropout,
                                   seed=seed + 1, **levels)

    @property
    def codebook_size(self) -> int:
        return self.semantic.codebook_size

    def groups(self, depth: int) -> tuple[tuple[ResidualVQ, int], ...]:
        """The groups ids of ``depth`` levels use, with their levels in each."""
        rest = depth - self.semantic_depth
        return ((self.semantic, min(depth, self.semantic_depth)),) + (((self.acoustic, rest),) if rest > 0 else ())

    def forward(self, z: Tensor, depth: int | None = None) -> QuantizerOutput:
        """Quantize ``z`` (B, N, dim) with ``depth`` levels across both groups (None: all)."""
        return super().forward(z, depth=depth)

    @full_precision
    def quantize(self, h: Tensor, depth: int | None = None) -> QuantizerOutput:
        """Each group quantizes ``h`` (B, N, dim) through its own projections; outputs summed, ids concatenated."""
        k = self.check_depth(depth)
        if depth is None and self.in_training_step:  # the acoustic group draws its own depth
            outs = [self.semantic(h), self.acoustic(h)]
        else:
            outs = [group(h, depth=levels) for group, levels in self.groups(k)]
        stats = {f"semantic/{name}": value for name, value in outs[0].stats.items()}
        stats |= {"usage": outs[0].stats["usage"], "perplexity": outs[0].stats["perplexity"]}
        if len(outs) > 1:
            stats |= {f"acoustic/{name}": value for name, value in outs[1].stats.items()}
        # each group's output is already straight-through to its input projection and trains its output projection
        return QuantizerOutput(sum(out.z_q for out in outs), torch.cat([out.ids for out in outs], dim=-1),
                               sum(out.loss for out in outs), stats)

    def lookup(self, ids: Tensor) -> Tensor:
        """The sum of both groups' outputs for ids (..., k)."""
        out, start = 0, 0
        for group, levels in self.groups(ids.shape[-1]):
            out = out + group.ids_to_codes(ids[..., start : start + levels])
            start += levels
        return out

    @torch.no_grad()
    def residual_energies(self, z: Tensor, ids: Tensor) -> Tensor:
        """Squared norm of what is left of each token of ``z`` (B, N, dim) before level 1 and after each of the
        first j levels of ``ids`` (B, N, k) (the decoded prefix subtracted): (B, N, k + 1)."""
        self.check_ids(ids)
        energies = [z.float().square().sum(-1)]
        for j in range(1, ids.shape[-1] + 1):
            energies.append((z.float() - self.lookup(ids[..., :j].long()).float()).square().sum(-1))
        return torch.stack(energies, dim=-1)

    def nearest_codes(self, ids: Tensor, delta: int, generator: torch.Generator) -> Tensor:
        """Ids (..., depth): each level's ids replaced independently, with that level's codebook."""
        parts, start = [], 0
        for group, levels in self.groups(ids.shape[-1]):
            parts.append(group.nearest_codes(ids[..., start : start + levels], delta, generator))
            start += levels
        return torch.cat(parts, dim=-1)

    def perturb_chosen(self, ids: Tensor, chosen: Tensor, delta: int, generator: torch.Generator) -> Tensor:
        """Every chosen level of every token drawn independently from that level's nearest codes."""
        start = 0
        for group, levels in self.groups(ids.shape[-1]):
            part = slice(start, start + levels)
            group.perturb_chosen(ids[..., part], chosen[..., part], delta, generator)
            start += levels
        return ids
