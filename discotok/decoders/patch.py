"""``patch``: the decoder mirroring the ``patch`` encoder, at token resolution until its last layer."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from discotok.decoders.base import Decoder, token_map
from discotok.layout import Layout
from discotok.nn.conv import ChannelRMSNorm, ResBlock
from discotok.registry import DECODERS


@DECODERS.register("patch")
class PatchDecoder(Decoder):
    """A 3x3 projection of the token grid to ``width``, ``depth`` residual blocks, then a 1x1 projection
    to ``patch_size`` x ``patch_size`` pixels per token, laid out in place (depth to space)."""

    def __init__(
        self, latent_dim: int, out_channels: int = 3, patch_size: int = 8, width: int = 128, depth: int = 2,
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
        return self.net(token_map(z_q, layout, "patch"))
