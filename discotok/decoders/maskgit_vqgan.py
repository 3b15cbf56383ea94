"""``maskgit_vqgan``: MaskGIT's VQGAN decoder (no attention), the pixel decoder two-stage TiTok decodes through.

A 3x3 convolution from ``latent_dim``, ``num_res_blocks`` residual blocks at the lowest resolution, then per
level from the lowest resolution ``num_res_blocks`` residual blocks and a nearest-neighbour upsampling with
a 3x3 convolution between levels, then GroupNorm, SiLU and a 3x3 convolution to ``out_channels``. As in
MaskGIT, the residual convolutions have no biases and where a block changes width its 1x1 skip maps the
block's output (``ResBlock(skip_from_output=True)``). The upsampling factor is ``2 ** (len(channel_mult) - 1)``.

With ``soft_codes`` K > 0 the decoder owns a codebook (K, ``latent_dim``) and each token it gets is K logits
over it: the decoder's input is the softmax-weighted sum of the codes (how TiTok's two-stage decoder feeds
MaskGIT-VQGAN's decoder); 0: tokens are ``latent_dim`` vectors, as from a quantizer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from discotok.decoders.base import Decoder, token_map
from discotok.layout import Layout
from discotok.nn.conv import ResBlock, Upsample, group_norm
from discotok.registry import DECODERS


def maskgit_block(in_channels: int, out_channels: int) -> ResBlock:
    """MaskGIT's residual block: bias-free convolutions, the skip taken from the output."""
    return ResBlock(in_channels, out_channels, bias=False, skip_from_output=True)


@DECODERS.register("maskgit_vqgan")
class MaskGitVQGANDecoder(Decoder):
    """Tokens (B, h*w, latent_dim) on a grid (or (B, h*w, K) code logits) -> images (B, out_channels, h*f, w*f)."""

    def __init__(
        self,
        latent_dim: int,
        out_channels: int = 3,
        channels: int = 128,
        channel_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        soft_codes: int = 0,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.codebook = nn.Parameter(torch.randn(soft_codes, latent_dim)) if soft_codes > 0 else None
        width = channels * channel_mult[-1]
        self.conv_in = nn.Conv2d(latent_dim, width, 3, padding=1)
        self.mid = nn.ModuleList(maskgit_block(width, width) for _ in range(num_res_blocks))
        self.levels = nn.ModuleList()
        for i in reversed(range(len(channel_mult))):
            level = nn.Module()
            out = channels * channel_mult[i]
            level.res = nn.ModuleList(maskgit_block(width if j == 0 else out, out) for j in range(num_res_blocks))
            level.upsample = Upsample(out) if i != 0 else nn.Identity()
            width = out
            self.levels.append(level)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)

    @property
    def last_layer(self) -> nn.Parameter:
        return self.conv_out.weight

    def alignment_layer(self) -> str:
        return "mid.0"

    def forward(
        self, z_q: Tensor, layout: Layout, keep: Tensor | None = None, size: Sequence[int] | None = None,
        lengths: Tensor | None = None,
    ) -> Tensor:
        """Decode a grid of tokens (code vectors, or logits over the soft codes) to images."""
        if self.codebook is not None:
            z_q = z_q.softmax(-1) @ self.codebook.to(z_q.dtype)
        h = self.conv_in(token_map(z_q, layout, "maskgit_vqgan"))
        for block in self.mid:
            h = block(h)
        for level in self.levels:
            for block in level.res:
                h = block(h)
            h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
