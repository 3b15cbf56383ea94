"""``magvit2``: MAGVIT-v2's image encoder as Open-MAGVIT2 publishes it; N = h*w tokens on a grid.

A bias-free 3x3 convolution, then per level ``num_res_blocks`` bias-free residual blocks (GroupNorm, SiLU,
3x3 convolution, twice; a 1x1 skip where the width changes) at width ``channels * channel_mult[i]`` and a
stride-2 3x3 convolution between levels, ``num_res_blocks`` more residual blocks in the middle (no
attention), then GroupNorm, SiLU and a 1x1 convolution to ``latent_dim``. Factor 2^(len(channel_mult) - 1).
Open-MAGVIT2's 256 px tokenizer: channels 128, [1, 1, 2, 2, 4], 4 blocks, 18 latent channels (its 128 px
one: [1, 2, 2, 4]); ``discotok convert open_magvit2`` reads its checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

from einops import rearrange
from torch import Tensor, nn

from discotok.encoders.base import Encoder, EncoderOutput, check_image_batch
from discotok.layout import Layout
from discotok.nn.conv import Downsample, ResBlock, group_norm
from discotok.registry import ENCODERS


@ENCODERS.register("magvit2")
class Magvit2Encoder(Encoder):
    """Images (B, in_channels, H, W) -> (B, H/f * W/f, latent_dim), f = 2^(len(channel_mult) - 1)."""

    def __init__(
        self,
        latent_dim: int,
        in_channels: int = 3,
        channels: int = 128,
        channel_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 4,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.downsample_factor = 2 ** (len(channel_mult) - 1)
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self.down = nn.ModuleList()
        width = channels
        for i, mult in enumerate(channel_mult):
            level = nn.Module()
            level.blocks = nn.ModuleList(ResBlock(width if j == 0 else channels * mult, channels * mult, bias=False)
                                         for j in range(num_res_blocks))
            width = channels * mult
            level.downsample = Downsample(width) if i < len(channel_mult) - 1 else nn.Identity()
            self.down.append(level)
        self.mid = nn.ModuleList(ResBlock(width, width, bias=False) for _ in range(num_res_blocks))
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, latent_dim, 1)

    def token_layout(self, size: Sequence[int]) -> Layout:
        f = self.downsample_factor
        return Layout("grid", (size[0] // f, size[1] // f))

    def alignment_layer(self) -> str:
        return "mid.0"

    def forward(self, x: Tensor, lengths: Tensor | None = None, num_tokens: int | None = None) -> EncoderOutput:
        """Images (B, C, H, W) -> one token per cell of the (H/f, W/f) grid (no lengths, no prefix)."""
        check_image_batch(x, self.in_channels, self.downsample_factor)
        h = self.conv_in(x)
        for level in self.down:
            for block in level.blocks:
                h = block(h)
            h = level.downsample(h)
        for block in self.mid:
            h = block(h)
        h = self.conv_out(nn.functional.silu(self.norm_out(h)))
        return EncoderOutput(rearrange(h, "b d h w -> b (h w) d"), Layout("grid", tuple(h.shape[-2:])))
