"""Haar wavelet patching of images (Cosmos-Tokenizer's ``Patcher`` / ``UnPatcher`` with ``patch_method="haar"``).

One level turns (B, C, H, W) into (B, 4C, H/2, W/2): for each 2x2 block of pixels ``x00, x01, x10, x11``
(row, column) the bands LL, LH, HL, HH are ``HAAR @ (x00, x01, x10, x11)``, stored band-major
(channel ``band * C + c``), with Cosmos's scale (its orthonormal filters, then halved: a quarter of the
sums and differences). ``patch_size`` = 2^k applies k levels, each to every band of the previous one.
``HAAR`` is symmetric and ``HAAR @ HAAR = I / 4``, so the inverse is ``4 * HAAR``.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor

HAAR = 0.25 * torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, -1.0, -1.0],
                            [1.0, -1.0, 1.0, -1.0], [1.0, -1.0, -1.0, 1.0]])


def wavelet_levels(patch_size: int) -> int:
    """log2 of ``patch_size``, which must be a power of two."""
    if patch_size < 1 or patch_size & (patch_size - 1):
        raise ValueError(f"the wavelet patch size must be a power of two, got {patch_size}")
    return int(math.log2(patch_size))


def haar_patch(x: Tensor, patch_size: int) -> Tensor:
    """(B, C, H, W) -> (B, C * patch_size^2, H / patch_size, W / patch_size) Haar bands."""
    for _ in range(wavelet_levels(patch_size)):
        blocks = rearrange(x, "b c (h p) (w q) -> b (p q) c h w", p=2, q=2)
        bands = torch.einsum("kj,bjchw->bkchw", HAAR.to(x), blocks)
        x = rearrange(bands, "b k c h w -> b (k c) h w")
    return x


def haar_unpatch(x: Tensor, patch_size: int) -> Tensor:
    """Inverse of ``haar_patch``: (B, C * patch_size^2, h, w) -> (B, C, h * patch_size, w * patch_size)."""
    for _ in range(wavelet_levels(patch_size)):
        bands = rearrange(x, "b (k c) h w -> b k c h w", k=4)
        blocks = torch.einsum("kj,bkchw->bjchw", 4 * HAAR.to(x), bands)
        x = rearrange(blocks, "b (p q) c h w -> b c (h p) (w q)", p=2, q=2)
    return x
