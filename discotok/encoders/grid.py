"""``grid``: a VQGAN-style convolutional encoder; N = h*w tokens on a 2-D grid."""

from __future__ import annotations

from collections.abc import Sequence

from einops import rearrange
from torch import Tensor, nn

from discotok.nn.conv import Downsample, group_norm, stage
from discotok.registry import ENCODERS
from discotok.encoders.base import Encoder, EncoderOutput, check_image_batch
from discotok.layout import Layout


@ENCODERS.register("grid")
class GridEncoder(Encoder):
    """Residual stages with stride-2 downsampling between them (factor 2^(len(channel_mult)-1))."""

    def __init__(
        self,
        latent_dim: int,
        in_channels: int = 3,
        channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 2, 4),
        num_res_blocks: int = 1,
    ) -> None:
        super().__init__()
        widths = [channels * m for m in channel_mult]
        self.in_channels = in_channels
        self.downsample_factor = 2 ** (len(widths) - 1)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1)]
        width = widths[0]
        for i, w in enumerate(widths):
            layers.append(stage(width, w, num_res_blocks))
            width = w
            if i < len(widths) - 1:
                layers.append(Downsample(width))
        layers += [stage(width, width, 1), group_norm(width), nn.SiLU(), nn.Conv2d(width, latent_dim, 1)]
        self.net = nn.Sequential(*layers)

    def token_layout(self, image_size: Sequence[int]) -> Layout:
        """The token grid for images of ``image_size`` (H, W)."""
        f = self.downsample_factor
        return Layout("grid", (image_size[0] // f, image_size[1] // f))

    def alignment_layer(self) -> str:
        return f"net.{len(self.net) - 4}"  # the last stage, before norm, activation and the 1x1 projection to z

    def forward(self, x: Tensor, lengths: Tensor | None = None, num_tokens: int | None = None) -> EncoderOutput:
        """Images (B, C, H, W) -> one token per cell of the (H/f, W/f) grid (no lengths, no prefix)."""
        check_image_batch(x, self.in_channels, self.downsample_factor)
        h = self.net(x)
        return EncoderOutput(rearrange(h, "b d h w -> b (h w) d"), Layout("grid", tuple(h.shape[-2:])))
