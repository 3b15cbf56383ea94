"""``taming``: VQGAN's convolutional encoder (taming-transformers, MaskGIT, LlamaGen); N = h*w tokens on a grid.

``num_res_blocks`` residual blocks per level (widths ``channels * channel_mult``), self-attention after each
block of the lowest-resolution level, a downsampling between levels (stride-2 convolution padded right and
bottom), a middle of residual block, attention and residual block, then GroupNorm, SiLU and a 3x3
convolution to ``latent_dim``. The module names follow LlamaGen's, so its checkpoints convert by renaming
the residual blocks' layers only (``discotok convert llamagen``).
"""

from __future__ import annotations

from collections.abc import Sequence

from einops import rearrange
from torch import Tensor, nn

from discotok.encoders.base import Encoder, EncoderOutput, check_image_batch
from discotok.layout import Layout
from discotok.nn.conv import AttnBlock, Downsample, ResBlock, group_norm
from discotok.registry import ENCODERS


@ENCODERS.register("taming")
class TamingEncoder(Encoder):
    """Images (B, in_channels, H, W) -> (B, H/f * W/f, latent_dim), f = 2^(len(channel_mult) - 1)."""

    def __init__(
        self,
        latent_dim: int,
        in_channels: int = 3,
        channels: int = 128,
        channel_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.downsample_factor = 2 ** (len(channel_mult) - 1)
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.conv_blocks = nn.ModuleList()
        width = channels
        for i, mult in enumerate(channel_mult):
            level = nn.Module()
            last = i == len(channel_mult) - 1
            level.res = nn.ModuleList(ResBlock(width if j == 0 else channels * mult, channels * mult)
                                      for j in range(num_res_blocks))
            width = channels * mult
            level.attn = nn.ModuleList(AttnBlock(width) for _ in range(num_res_blocks if last else 0))
            level.downsample = nn.Identity() if last else Downsample(width, asymmetric=True)
            self.conv_blocks.append(level)
        self.mid = nn.ModuleList([ResBlock(width, width), AttnBlock(width), ResBlock(width, width)])
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, latent_dim, 3, padding=1)

    def token_layout(self, size: Sequence[int]) -> Layout:
        f = self.downsample_factor
        return Layout("grid", (size[0] // f, size[1] // f))

    def alignment_layer(self) -> str:
        return "mid.0"

    def forward(self, x: Tensor, lengths: Tensor | None = None, num_tokens: int | None = None) -> EncoderOutput:
        """Images (B, C, H, W) -> one token per cell of the (H/f, W/f) grid (no lengths, no prefix)."""
        check_image_batch(x, self.in_channels, self.downsample_factor)
        h = self.conv_in(x)
        for level in self.conv_blocks:
            for j, block in enumerate(level.res):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            h = level.downsample(h)
        for block in self.mid:
            h = block(h)
        h = self.conv_out(nn.functional.silu(self.norm_out(h)))
        return EncoderOutput(rearrange(h, "b d h w -> b (h w) d"), Layout("grid", tuple(h.shape[-2:])))
