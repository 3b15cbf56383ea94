"""``grid``: the convolutional decoder mirroring the grid encoder."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from discotok.nn.conv import Upsample, group_norm, stage
from discotok.decoders.base import Decoder, token_map
from discotok.layout import Layout
from discotok.registry import DECODERS


@DECODERS.register("grid")
class GridDecoder(Decoder):
    """Residual stages with nearest-neighbour upsampling; widths mirror the encoder's."""

    def __init__(
        self,
        latent_dim: int,
        out_channels: int = 3,
        channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 2, 4),
        num_res_blocks: int = 1,
    ) -> None:
        super().__init__()
        widths = [channels * m for m in reversed(channel_mult)]
        self.out_channels = out_channels
        self.upsample_factor = 2 ** (len(widths) - 1)
        width = widths[0]
        layers: list[nn.Module] = [nn.Conv2d(latent_dim, width, 3, padding=1), stage(width, width, 1)]
        for i, w in enumerate(widths):
            layers.append(stage(width, w, num_res_blocks))
            width = w
            if i < len(widths) - 1:
                layers.append(Upsample(width))
        layers += [group_norm(width), nn.SiLU(), nn.Conv2d(width, out_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    @property
    def last_layer(self) -> nn.Parameter:
        """The weight of the output convolution (VQGAN's adaptive adversarial weight measures gradients there)."""
        return self.net[-1].weight

    def forward(
        self, z_q: Tensor, layout: Layout, keep: Tensor | None = None, size: Sequence[int] | None = None,
        lengths: Tensor | None = None,
    ) -> Tensor:
        """Decode (B, N, D) tokens laid out on ``layout``'s (h, w) grid to (B, C, H, W) (the grid fixes the size)."""
        return self.net(token_map(z_q, layout, "grid"))
