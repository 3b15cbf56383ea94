"""``patch``: a convolutional encoder that works at token resolution from the first layer.

Each ``patch_size`` x ``patch_size`` cell of pixels is stacked into one vector (space to depth),
projected to ``width`` channels and refined by residual 3x3 convolutions over the token grid;
N = (H / p) * (W / p) tokens on a 2-D grid, like ``grid``. With no full-resolution layers it
costs a fraction of ``grid``'s step at the same token grid, so on a CPU budget it trains for
many more steps; DC-AE's space-to-channel idea taken to a single stage.
"""

from __future__ import annotations

from collections.abc import Sequence

from einops import rearrange
from torch import Tensor, nn

from discotok.encoders.base import Encoder, EncoderOutput, check_image_batch
from discotok.layout import Layout
from discotok.nn.conv import ChannelRMSNorm, ResBlock
from discotok.registry import ENCODERS


@ENCODERS.register("patch")
class PatchEncoder(Encoder):
    """Space to depth by ``patch_size``, a 1x1 projection to ``width``, ``depth`` residual blocks
    (channel RMS norm, SiLU, 3x3 convolutions), then a 1x1 projection to ``latent_dim``."""

    def __init__(
        self, latent_dim: int, in_channels: int = 3, patch_size: int = 8, width: int = 128, depth: int = 2,
    ) -> None:
        super().__init__()
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

    def token_layout(self, image_size: Sequence[int]) -> Layout:
        """The token grid for images of ``image_size`` (H, W)."""
        return Layout("grid", (image_size[0] // self.patch_size, image_size[1] // self.patch_size))

    def alignment_layer(self) -> str:
        return f"net.{len(self.net) - 4}"  # the last residual block, before norm, activation and projection

    def forward(self, x: Tensor, lengths: Tensor | None = None, num_tokens: int | None = None) -> EncoderOutput:
        """Images (B, C, H, W) -> one token per ``patch_size`` cell (no lengths, no prefix)."""
        check_image_batch(x, self.in_channels, self.patch_size)
        h = self.net(x)
        return EncoderOutput(rearrange(h, "b d h w -> b (h w) d"), Layout("grid", tuple(h.shape[-2:])))
