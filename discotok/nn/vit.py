"""Vision-transformer pieces shared by the ViT and 1-D (TiTok-style) encoders and decoders.

Attention is timm's ``Block`` (pre-norm, fused ``scaled_dot_product_attention``), which
takes an optional boolean (``True`` = may attend) or additive attention mask. timm is imported
when a transformer is built, not with this module: it pulls in torchvision's model zoo, which
would make ``import discotok`` slow.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from einops import rearrange
from torch import Tensor, nn


def init_vit_weights(module: nn.Module) -> None:
    """ViT initialisation: truncated-normal (std 0.02) linear weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def grid_size(image_size: Sequence[int], patch_size: int) -> tuple[int, int]:
    """The patch grid (h, w) of an (H, W) image; ``ValueError`` unless p divides H and W."""
    height, width = int(image_size[0]), int(image_size[1])
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"image height and width must be multiples of the patch size {patch_size}, got {height}x{width}"
        )
    return height // patch_size, width // patch_size


class Transformer(nn.Module):
    """``depth`` pre-norm timm blocks followed by a final LayerNorm (eps 1e-5); ``norm_eps`` is the eps of the
    blocks' LayerNorms (timm's 1e-6; ``nn.LayerNorm``'s 1e-5 in TiTok's reference)."""

    def __init__(self, width: int, depth: int, heads: int, mlp_ratio: float = 4.0, norm_eps: float = 1e-6) -> None:
        from timm.models.vision_transformer import Block

        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        norm = partial(nn.LayerNorm, eps=norm_eps)
        self.blocks = nn.ModuleList(
            Block(width, heads, mlp_ratio=mlp_ratio, qkv_bias=True, depth=i, norm_layer=norm) for i in range(depth)
        )
        self.norm = nn.LayerNorm(width)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """(B, L, width) -> (B, L, width); ``attn_mask`` (L, L), boolean (True: attend) or additive."""
        for block in self.blocks:
            x = block(x, attn_mask=attn_mask)
        return self.norm(x)


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches to tokens: a Conv2d of stride p."""

    def __init__(self, in_channels: int, width: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, width, patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """(B, C, H, W) -> tokens (B, h*w, width) and the grid (h, w)."""
        h = self.proj(x)
        return rearrange(h, "b d h w -> b (h w) d"), (h.shape[-2], h.shape[-1])


class GridPosEmbed(nn.Module):
    """Learnable absolute positions for a base grid, resampled (bicubic) for other grids."""

    def __init__(self, grid: Sequence[int], width: int) -> None:
        super().__init__()
        self.grid = (int(grid[0]), int(grid[1]))
        self.weight = nn.Parameter(torch.empty(1, self.grid[0] * self.grid[1], width))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, grid: Sequence[int]) -> Tensor:
        """Positions (1, h*w, width) for a grid (h, w)."""
        grid = [int(grid[0]), int(grid[1])]
        if tuple(grid) == self.grid:
            return self.weight
        from timm.layers import resample_abs_pos_embed

        return resample_abs_pos_embed(self.weight, grid, old_size=list(self.grid), num_prefix_tokens=0)


class PatchHead(nn.Module):
    """Tokens on an (h, w) grid back to pixels: p*p*C values per token.

    ``mlp_ratio`` 0 is one linear map; above 0, a hidden layer of ``mlp_ratio * width`` with
    tanh comes first (TiTok's decoder head, there mapping to code logits, here to pixels).
    """

    def __init__(self, width: int, out_channels: int, patch_size: int, mlp_ratio: float = 0.0) -> None:
        super().__init__()
        self.patch_size = patch_size
        hidden = int(mlp_ratio * width)
        self.hidden = nn.Sequential(nn.Linear(width, hidden), nn.Tanh()) if hidden > 0 else nn.Identity()
        self.proj = nn.Linear(hidden or width, patch_size * patch_size * out_channels)

    def features(self, x: Tensor) -> Tensor:
        """(B, L, width) -> (B, L, p*p*C): each token's values, not yet arranged as pixels."""
        return self.proj(self.hidden(x))

    def forward(self, x: Tensor, grid: Sequence[int]) -> Tensor:
        """(B, h*w, width) -> (B, C, h*p, w*p)."""
        p = self.patch_size
        return rearrange(self.features(x), "b (h w) (p q c) -> b c (h p) (w q)", h=grid[0], w=grid[1], p=p, q=p)


def rescale(x: Tensor, source: Sequence[float], target: Sequence[float]) -> Tensor:
    """``x`` mapped linearly from the value range ``source`` (lo, hi) onto ``target``; as is when they agree
    (discotok's images lie in [-1, 1]; TiTok's reference takes and gives [0, 1])."""
    if tuple(source) == tuple(target):
        return x
    return (x - source[0]) * ((target[1] - target[0]) / (source[1] - source[0])) + target[0]
