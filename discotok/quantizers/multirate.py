"""The ids layout of a multi-rate residual quantizer (SNAC): levels at 1/stride of the frame rate, one token per
coarsest step.

With ``strides`` [4, 2, 1] a token position covers S = 4 frames (the largest stride) and holds
S / stride codes of each level, level by level and in time order within a level:
``[l0, l1(t0), l1(t1), l2(t0), l2(t1), l2(t2), l2(t3)]``, 1 + 2 + 4 = 7 codes. Ids are one int64
tensor (B, tokens, columns); the first k levels are the first ``columns(k)`` columns, so a lower
depth keeps a prefix of the columns (1, 3 or 7 here), as ``ids[..., :k]`` does for a plain ``rvq``.
``split`` gives SNAC's list of per-level codes (B, tokens * S / stride) and ``join`` takes it back.
Plain residual VQ is the case of strides all 1 (one column per level).

A level of stride s quantizes the residual averaged over s frames (``avg_pool1d``, SNAC) and its
codes are repeated back to every frame (``repeat_interleave``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor


class RateLayout:
    """Levels of ``strides`` (each dividing the largest, ``frames`` per token) and their columns in ids."""

    def __init__(self, strides: Sequence[int]) -> None:
        strides = [int(s) for s in strides]
        if not strides or any(s < 1 for s in strides) or any(max(strides) % s for s in strides):
            raise ValueError(f"strides must be positive integers dividing the largest, got {list(strides)}")
        self.strides = strides
        self.frames = max(strides)
        self.counts = [self.frames // s for s in strides]  # codes of each level per token

    def columns(self, depth: int) -> int:
        """Id columns of the first ``depth`` levels."""
        return sum(self.counts[:depth])

    def depth_of(self, columns: int) -> int:
        """The depth whose ids have ``columns`` columns; ``ValueError`` when none does."""
        for depth in range(1, len(self.strides) + 1):
            if self.columns(depth) == columns:
                return depth
        raise ValueError(f"ids of {columns} columns are no depth of levels with strides {self.strides} "
                         f"(columns by depth: {[self.columns(d) for d in range(1, len(self.strides) + 1)]})")

    @property
    def column_levels(self) -> list[int]:
        """The level of each id column."""
        return [j for j, count in enumerate(self.counts) for _ in range(count)]

    def split(self, ids: Tensor) -> list[Tensor]:
        """Ids (B, N, columns(k)) -> k per-level tensors (B, N * S / stride) in time order (SNAC's ``codes``)."""
        out, start = [], 0
        for count in self.counts[: self.depth_of(ids.shape[-1])]:
            out.append(rearrange(ids[..., start : start + count], "b n c -> b (n c)"))
            start += count
        return out

    def join(self, codes: Sequence[Tensor]) -> Tensor:
        """Per-level codes (B, N * S / stride), a prefix of the levels -> ids (B, N, columns)."""
        if not 1 <= len(codes) <= len(self.strides):
            raise ValueError(f"expected codes of 1 to {len(self.strides)} levels, got {len(codes)}")
        parts = []
        for code, count in zip(codes, self.counts):
            if code.ndim != 2 or code.shape[-1] % count or code.shape[-1] // count != codes[0].shape[-1]:
                lengths = [tuple(c.shape) for c in codes]
                raise ValueError(f"codes of strides {self.strides[: len(codes)]} must be "
                                 f"(B, N * {self.counts[: len(codes)]}) for one N, got shapes {lengths}")
            parts.append(rearrange(code, "b (n c) -> b n c", c=count))
        return torch.cat(parts, dim=-1)

    def pool(self, h: Tensor, level: int) -> Tensor:
        """Token vectors (B, N, S * D) -> level ``level``'s input (B, N * S / stride, D): frames averaged by stride."""
        if self.frames == 1:
            return h
        frames = rearrange(h, "b n (s d) -> b d (n s)", s=self.frames)
        stride = self.strides[level]
        if stride > 1:
            frames = F.avg_pool1d(frames, stride, stride)
        return rearrange(frames, "b d n -> b n d")

    def unpool(self, q: Tensor, level: int) -> Tensor:
        """Level ``level``'s codes (B, N * S / stride, D) -> token vectors (B, N, S * D), each repeated ``stride``
        times."""
        if self.frames == 1:
            return q
        q = q.repeat_interleave(self.strides[level], dim=1) if self.strides[level] > 1 else q
        return rearrange(q, "b (n s) d -> b n (s d)", s=self.frames)


def split_rates(ids: Tensor, strides: Sequence[int]) -> list[Tensor]:
    """Our multi-rate ids (B, N, columns) -> SNAC's list of codes, one (B, N * max(strides) / stride) per level."""
    return RateLayout(strides).split(ids)


def join_rates(codes: Sequence[Tensor], strides: Sequence[int]) -> Tensor:
    """SNAC's list of per-level codes -> our ids (B, N, columns) (inverse of ``split_rates``)."""
    return RateLayout(strides).join(codes)
