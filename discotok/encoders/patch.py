"""``patch``: a convolutional encoder that works at token resolution from the first layer.

Each ``patch_size`` x ``patch_size`` cell of pixels is stacked into one vector (space to depth),
projected to ``width`` channels and refined by residual 3x3 convolutions over the token grid;
N = (H / p) * (W / p) tokens on a 2-D grid, like ``grid``. With no full-resolution layers it
costs a fraction of ``grid``'s step at the same token grid, so on a CPU budget it trains for
many more steps; DC-AE's space-to-channel idea taken to a single stage.

With ``data_init`` a linear path (a 1x1 convolution of the stacked pixels) joins the output, and the first
training batch sets it to the principal components of its cells (whitened, times ``init_scale``) while the
non-linear branch's output projection starts at zero: training starts from the best linear code of the
data, as k-means starts a VQ codebook, and learns the non-linear correction.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from discotok.encoders.base import Encoder, EncoderOutput, check_image_batch
from discotok.layout import Layout
from discotok.nn.conv import ChannelRMSNorm, ResBlock
from discotok.nn.data_init import pca_init_, zero_
from discotok.registry import ENCODERS


@ENCODERS.register("patch")
class PatchEncoder(Encoder):
    """Space to depth by ``patch_size``, a 1x1 projection to ``width``, ``depth`` residual blocks
    (channel RMS norm, SiLU, 3x3 convolutions), then a 1x1 projection to ``latent_dim``; ``data_init``: plus
    a linear path from the stacked pixels, started at their principal components on the first training batch
    (see the module docstring)."""

    def __init__(
        self, latent_dim: int, in_channels: int = 3, patch_size: int = 8, width: int = 128, depth: int = 2,
        data_init: bool = False, init_scale: float = 0.5,
    ) -> None:
        super().__init__()
        if init_scale <= 0:
            raise ValueError(f"patch encoder: init_scale must be positive, got {init_scale}")
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.net = nn.Sequential(
            nn.PixelUnshuffle(patch_size),
            nn.Conv2d(in_channels * patch_size**2, width, 1),
            *[ResBlock(width, width, ChannelRMSNorm) for _ in range(depth)],
            ChannelRMSNorm(width),
            nn.SiLU(),
            nn.Conv2d(width, latent_dim, 1),
        )
        self.init_scale = init_scale
        self.linear = nn.Conv2d(in_channels * patch_size**2, latent_dim, 1) if data_init else None
        if data_init:
            self.register_buffer("initted", torch.tensor(False))

    def token_layout(self, image_size: Sequence[int]) -> Layout:
        """The token grid for images of ``image_size`` (H, W)."""
        return Layout("grid", (image_size[0] // self.patch_size, image_size[1] // self.patch_size))

    def alignment_layer(self) -> str:
        return f"net.{len(self.net) - 4}"  # the last residual block, before norm, activation and projection

    def forward(self, x: Tensor, lengths: Tensor | None = None, num_tokens: int | None = None) -> EncoderOutput:
        """Images (B, C, H, W) -> one token per ``patch_size`` cell (no lengths, no prefix)."""
        check_image_batch(x, self.in_channels, self.patch_size)
        cells = self.net[0](x)
        if self.linear is not None and self.training and torch.is_grad_enabled() and not bool(self.initted):
            pca_init_(self.linear, rearrange(cells.detach(), "b c h w -> (b h w) c"), self.init_scale)
            zero_(self.net[-1])
            self.initted.fill_(True)
        h = self.net[1:](cells)
        if self.linear is not None:
            h = h + self.linear(cells)
        return EncoderOutput(rearrange(h, "b d h w -> b (h w) d"), Layout("grid", tuple(h.shape[-2:])))
