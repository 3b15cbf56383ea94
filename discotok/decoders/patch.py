"""``patch``: the decoder mirroring the ``patch`` encoder, at token resolution until its last layer.

With ``data_init`` a linear path (a ``linear_kernel`` x ``linear_kernel`` convolution of the token grid, edges
replicated, to each cell's pixels) joins the output, and the first training batch sets it to the least-squares
map from its quantized tokens (each with its neighbours) to its pixels while
the non-linear branch's output projection starts at zero (``init_from_batch``): with the encoder's PCA start,
training begins at the best linear decoder of those codes. A 3x3 path lets that start blend each cell
with its neighbours, as bicubic upsampling does for a thumbnail.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from discotok.decoders.base import Decoder, token_map
from discotok.layout import Layout
from discotok.nn.conv import ChannelRMSNorm, ResBlock
from discotok.nn.data_init import least_squares_init_, zero_
from discotok.registry import DECODERS


@DECODERS.register("patch")
class PatchDecoder(Decoder):
    """A 3x3 projection of the token grid to ``width``, ``depth`` residual blocks, then a 1x1 projection
    to ``patch_size`` x ``patch_size`` pixels per token, laid out in place (depth to space); ``data_init``: plus
    a linear path from the tokens and their neighbours (``linear_kernel``, odd), fitted by least squares on the
    first training batch (see the module docstring)."""

    def __init__(
        self, latent_dim: int, out_channels: int = 3, patch_size: int = 8, width: int = 128, depth: int = 2,
        data_init: bool = False, linear_kernel: int = 1,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.patch_size = patch_size
        self.net = nn.Sequential(
            nn.Conv2d(latent_dim, width, 3, padding=1),
            *[ResBlock(width, width, ChannelRMSNorm) for _ in range(depth)],
            ChannelRMSNorm(width),
            nn.SiLU(),
            nn.Conv2d(width, out_channels * patch_size**2, 1),
            nn.PixelShuffle(patch_size),
        )
        if linear_kernel < 1 or linear_kernel % 2 == 0:
            raise ValueError(f"patch decoder: linear_kernel must be a positive odd size, got {linear_kernel}")
        self.linear = (
            nn.Conv2d(latent_dim, out_channels * patch_size**2, linear_kernel, padding=linear_kernel // 2,
                      padding_mode="replicate")
            if data_init else None
        )
        if data_init:
            self.register_buffer("initted", torch.tensor(False))

    @property
    def last_layer(self) -> nn.Parameter:
        """The weight of the output projection (VQGAN's adaptive adversarial weight measures gradients there)."""
        return self.net[-2].weight

    def alignment_layer(self) -> str:
        return f"net.{len(self.net) - 5}"  # the last residual block

    def forward(
        self, z_q: Tensor, layout: Layout, keep: Tensor | None = None, size: Sequence[int] | None = None,
        lengths: Tensor | None = None,
    ) -> Tensor:
        """Decode (B, N, D) tokens laid out on ``layout``'s (h, w) grid to (B, C, h * p, w * p)."""
        tokens = token_map(z_q, layout, "patch")
        cells = self.net[:-1](tokens)
        if self.linear is not None:
            cells = cells + self.linear(tokens)
        return self.net[-1](cells)

    def init_from_batch(self, z_q: Tensor, layout: Layout, target: Tensor) -> None:
        """With ``data_init``, on the first call: the linear path := least squares from these tokens to the
        pixels of ``target`` (B, C, H, W), and the non-linear branch's output projection := 0."""
        if self.linear is None or bool(self.initted):
            return
        grid = token_map(z_q.detach(), layout, "patch")
        k = self.linear.kernel_size[0]
        near = nn.functional.unfold(nn.functional.pad(grid, [k // 2] * 4, mode="replicate"), k)
        tokens = rearrange(near, "b f (h w) -> (b h w) f", h=grid.shape[-2])
        cells = rearrange(nn.functional.pixel_unshuffle(target, self.patch_size), "b c h w -> (b h w) c")
        least_squares_init_(self.linear, tokens, cells)
        zero_(self.net[-2])
        self.initted.fill_(True)
