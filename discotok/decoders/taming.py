"""``taming``: VQGAN's convolutional decoder (taming-transformers, MaskGIT, LlamaGen), mirroring the ``taming`` encoder.

A 3x3 convolution from ``latent_dim``, a middle of residual block, attention and residual block, then per
level from the lowest resolution ``num_res_blocks + 1`` residual blocks (self-attention after each at the
lowest resolution) and a nearest-neighbour upsampling with a 3x3 convolution between levels, then GroupNorm,
SiLU and a 3x3 convolution to ``out_channels``. Module names follow LlamaGen's.

Options for other VQGANs (their defaults keep the plain VQGAN): ``attn_levels`` (levels numbered as the
encoder's, 0 the highest resolution) puts the attention on other levels; ``upsamples`` (default
``len(channel_mult) - 1``) upsamples after the first that many levels decoded only (Cosmos-Tokenizer's DI8x8).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from discotok.decoders.base import Decoder, token_map
from discotok.layout import Layout
from discotok.nn.conv import AttnBlock, ResBlock, Upsample, group_norm
from discotok.registry import DECODERS


@DECODERS.register("taming")
class TamingDecoder(Decoder):
    """Tokens (B, h*w, latent_dim) on a grid -> images (B, out_channels, h*f, w*f), f = 2^upsamples."""

    def __init__(
        self,
        latent_dim: int,
        out_channels: int = 3,
        channels: int = 128,
        channel_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        attn_levels: Sequence[int] | None = None,
        upsamples: int | None = None,
    ) -> None:
        super().__init__()
        levels = len(channel_mult)
        attn_levels = {levels - 1} if attn_levels is None else {int(i) for i in attn_levels}
        if not attn_levels <= set(range(levels)):
            raise ValueError(f"attn_levels {sorted(attn_levels)} must lie in 0..{levels - 1}")
        upsamples = levels - 1 if upsamples is None else int(upsamples)
        if not 0 <= upsamples <= levels - 1:
            raise ValueError(f"upsamples must lie in 0..{levels - 1} (one between levels), got {upsamples}")
        self.out_channels = out_channels
        width = channels * channel_mult[-1]
        self.conv_in = nn.Conv2d(latent_dim, width, 3, padding=1)
        self.mid = nn.ModuleList([ResBlock(width, width), AttnBlock(width), ResBlock(width, width)])
        self.conv_blocks = nn.ModuleList()
        for i in reversed(range(len(channel_mult))):
            level = nn.Module()
            out = channels * channel_mult[i]
            level.res = nn.ModuleList(ResBlock(width if j == 0 else out, out) for j in range(num_res_blocks + 1))
            width = out
            level.attn = nn.ModuleList(AttnBlock(width) for _ in range(num_res_blocks + 1 if i in attn_levels else 0))
            level.upsample = Upsample(width) if i >= levels - upsamples else nn.Identity()
            self.conv_blocks.append(level)
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
        """Decode (B, N, D) tokens laid out on ``layout``'s (h, w) grid (the grid fixes the size)."""
        h = self.conv_in(token_map(z_q, layout, "taming"))
        for block in self.mid:
            h = block(h)
        for level in self.conv_blocks:
            for j, block in enumerate(level.res):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            h = level.upsample(h)
        return self.pixels_out(self.conv_out(nn.functional.silu(self.norm_out(h))))

    def pixels_out(self, h: Tensor) -> Tensor:
        """The images from ``conv_out``'s output (as they are here)."""
        return h
