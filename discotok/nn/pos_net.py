"""WavTokenizer's ``pos_net``: residual blocks and one self-attention block over frames, before the Vocos trunk.

Two GroupNorm (32 groups) residual blocks with SiLU and kernel-3 convolutions, one single-head attention block
(1x1 convolutions for q, k, v and the output), two more residual blocks and a final GroupNorm (Ji et al. 2024,
``decoder/models.py``'s ``ResnetBlock`` / ``AttnBlock`` in 1-D). Module names are the reference's, so its tensors
load under the same names. With a frame ``mask`` (B, 1, N) the group statistics, the convolutions' inputs and the
attention's keys ignore padded frames: an item in a padded batch gets what it gets alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from discotok.nn.conv1d import apply_mask

GROUPS = 32


def group_norm(norm: nn.GroupNorm, x: Tensor, mask: Tensor | None) -> Tensor:
    """``norm`` (B, C, N) with statistics over the valid frames of ``mask`` (B, 1, N) only."""
    if mask is None:
        return norm(x)
    g = rearrange(x, "b (g c) n -> b g c n", g=norm.num_groups)
    m = mask.to(x.dtype)[:, None]
    count = m.sum(dim=(2, 3), keepdim=True).clamp(min=1) * g.shape[2]
    mean = (g * m).sum(dim=(2, 3), keepdim=True) / count
    var = ((g - mean).square() * m).sum(dim=(2, 3), keepdim=True) / count
    y = rearrange((g - mean) * torch.rsqrt(var + norm.eps), "b g c n -> b (g c) n")
    return y * norm.weight[:, None] + norm.bias[:, None]


class ResnetBlock(nn.Module):
    """GroupNorm -> SiLU -> conv3 -> GroupNorm -> SiLU -> (dropout) -> conv3, plus identity."""

    def __init__(self, dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(GROUPS, dim, eps=1e-6)
        self.conv1 = nn.Conv1d(dim, dim, 3, padding=1)
        self.norm2 = nn.GroupNorm(GROUPS, dim, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(dim, dim, 3, padding=1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        h = self.conv1(apply_mask(F.silu(group_norm(self.norm1, x, mask)), mask))
        h = self.conv2(apply_mask(self.dropout(F.silu(group_norm(self.norm2, h, mask))), mask))
        return x + h


class AttnBlock(nn.Module):
    """GroupNorm -> single-head attention over frames (1x1 convolutions), plus identity."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(GROUPS, dim, eps=1e-6)
        self.q, self.k, self.v, self.proj_out = (nn.Conv1d(dim, dim, 1) for _ in range(4))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        h = group_norm(self.norm, x, mask)
        q, k, v = (rearrange(f(h), "b c n -> b 1 n c") for f in (self.q, self.k, self.v))
        keys = None if mask is None else rearrange(mask.bool(), "b 1 n -> b 1 1 n")
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=keys)
        return x + self.proj_out(rearrange(h, "b 1 n c -> b c n"))


class PosNet(nn.ModuleList):
    """ResnetBlock x2, AttnBlock, ResnetBlock x2, GroupNorm: (B, C, N) -> (B, C, N); C a multiple of 32."""

    def __init__(self, dim: int) -> None:
        if dim % GROUPS:
            raise ValueError(f"the attention block's GroupNorms need a width divisible by {GROUPS}, got {dim}")
        super().__init__([ResnetBlock(dim), ResnetBlock(dim), AttnBlock(dim), ResnetBlock(dim), ResnetBlock(dim),
                          nn.GroupNorm(GROUPS, dim, eps=1e-6)])

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        *blocks, norm = self
        for block in blocks:
            x = block(x, mask)
        return group_norm(norm, x, mask)
