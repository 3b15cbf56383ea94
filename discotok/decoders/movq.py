"""``movq``: MoVQ's decoder as Emu3 uses it (``Emu3VQVAE``): the VQGAN decoder whose GroupNorms are modulated by
the quantized codes (spatially conditioned normalisation), behind Emu3's temporal layers.

The tokens are the raw codes (B, h*w, latent_dim) of a ``vq`` quantizer without projections. As
``Emu3VQVAE.decode`` does for an image: the codes are one frame; a causal (3, 1, 1) ``post_quant_conv`` gives
the decoder's input, and both it and the codes go through ``num_res_blocks`` temporal residual blocks and
log2(``temporal_upsample``) temporal upsamplings (each followed by SiLU) as one batch; the image is the first
of the frames this makes (a causal stack: the first frame depends on nothing else). Then, per frame, the
``taming`` decoder's layout (a 3x3 convolution, a middle of residual block, attention and residual block,
``num_res_blocks + 1`` residual blocks per level with attention on ``attn_levels`` (default: the lowest
resolution), nearest-neighbour upsampling with a 3x3 convolution between levels, norm, SiLU, 3x3
convolution), where every normalisation is a ``SpatialNorm``: GroupNorm times a 1x1 convolution of the
codes plus another (``conv_y``, ``conv_b``), the codes resized (nearest) to the feature map.
``output_scale`` / ``output_shift`` (one per channel) undo a publisher's normalisation: the image is
``(y - shift) / scale`` of the network's output y (the encoder's ``input_scale`` / ``input_shift``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from discotok.decoders.base import Decoder, token_map
from discotok.layout import Layout
from discotok.nn.conv import AttnBlock, Upsample, channel_values, group_norm
from discotok.nn.temporal import CausalConv3d, TemporalResBlock, TemporalUpsample
from discotok.registry import DECODERS


class SpatialNorm(nn.Module):
    """GroupNorm of a (B, C, H, W) map modulated by codes (B, D, h, w): ``norm(x) * conv_y(zq) + conv_b(zq)``."""

    def __init__(self, channels: int, code_dim: int) -> None:
        super().__init__()
        self.norm_layer = group_norm(channels)
        self.conv_y = nn.Conv2d(code_dim, channels, 1)
        self.conv_b = nn.Conv2d(code_dim, channels, 1)

    def forward(self, x: Tensor, zq: Tensor) -> Tensor:
        zq = F.interpolate(zq, size=x.shape[-2:], mode="nearest")
        return self.norm_layer(x) * self.conv_y(zq) + self.conv_b(zq)


class SpatialResBlock(nn.Module):
    """The pre-activation residual block (``discotok.nn.conv.ResBlock``) with code-modulated norms."""

    def __init__(self, in_channels: int, out_channels: int, code_dim: int) -> None:
        super().__init__()
        self.norm1 = SpatialNorm(in_channels, code_dim)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = SpatialNorm(out_channels, code_dim)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, zq: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x, zq)))
        return self.skip(x) + self.conv2(F.silu(self.norm2(h, zq)))


class SpatialAttnBlock(AttnBlock):
    """VQGAN's self-attention (``AttnBlock``) with a code-modulated norm."""

    def __init__(self, channels: int, code_dim: int, heads: int = 1) -> None:
        super().__init__(channels, heads)
        self.norm = SpatialNorm(channels, code_dim)

    def forward(self, x: Tensor, zq: Tensor) -> Tensor:
        return x + self.attend(self.norm(x, zq))


@DECODERS.register("movq")
class MoVQDecoder(Decoder):
    """Codes (B, h*w, latent_dim) on a grid -> images (B, out_channels, h*f, w*f), f = 2^(len(channel_mult) - 1)."""

    def __init__(
        self,
        latent_dim: int,
        out_channels: int = 3,
        channels: int = 256,
        channel_mult: Sequence[int] = (1, 2, 2, 4),
        num_res_blocks: int = 2,
        attn_levels: Sequence[int] | None = None,
        heads: int = 1,
        temporal_upsample: int = 4,
        output_scale: Sequence[float] | None = None,
        output_shift: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if temporal_upsample < 1 or temporal_upsample & (temporal_upsample - 1):
            raise ValueError(f"temporal_upsample must be a power of two, got {temporal_upsample}")
        levels = len(channel_mult)
        attn_levels = {levels - 1} if attn_levels is None else {int(i) for i in attn_levels}
        self.out_channels = out_channels
        self.register_buffer("output_scale", channel_values(output_scale, 1.0, out_channels), persistent=False)
        self.register_buffer("output_shift", channel_values(output_shift, 0.0, out_channels), persistent=False)
        self.post_quant_conv = CausalConv3d(latent_dim, latent_dim, (3, 1, 1))
        self.time_res_stack = nn.ModuleList(TemporalResBlock(latent_dim, latent_dim) for _ in range(num_res_blocks))
        self.time_conv = nn.ModuleList(TemporalUpsample(latent_dim) for _ in range(int(math.log2(temporal_upsample))))
        width = channels * channel_mult[-1]
        self.conv_in = nn.Conv2d(latent_dim, width, 3, padding=1)
        self.mid = nn.ModuleList([SpatialResBlock(width, width, latent_dim), SpatialAttnBlock(width, latent_dim, heads),
                                  SpatialResBlock(width, width, latent_dim)])
        self.conv_blocks = nn.ModuleList()
        for i in reversed(range(levels)):
            level = nn.Module()
            out = channels * channel_mult[i]
            level.res = nn.ModuleList(SpatialResBlock(width if j == 0 else out, out, latent_dim)
                                      for j in range(num_res_blocks + 1))
            width = out
            level.attn = nn.ModuleList(SpatialAttnBlock(width, latent_dim, heads)
                                       for _ in range(num_res_blocks + 1 if i in attn_levels else 0))
            level.upsample = Upsample(width) if i != 0 else nn.Identity()
            self.conv_blocks.append(level)
        self.norm_out = SpatialNorm(width, latent_dim)
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)

    @property
    def last_layer(self) -> nn.Parameter:
        return self.conv_out.weight

    def alignment_layer(self) -> str:
        return "mid.0"

    def temporal(self, zq: Tensor) -> tuple[Tensor, Tensor]:
        """The first frame of the decoder's input and of the codes after the temporal layers, both (B, D, h, w)."""
        zq = rearrange(zq, "b d h w -> b d 1 h w")
        h = torch.cat([self.post_quant_conv(zq), zq])
        for block in self.time_res_stack:
            h = block(h)
        for conv in self.time_conv:
            h = F.silu(conv(h))
        return h[:, :, 0].chunk(2)

    def forward(
        self, z_q: Tensor, layout: Layout, keep: Tensor | None = None, size: Sequence[int] | None = None,
        lengths: Tensor | None = None,
    ) -> Tensor:
        """Decode (B, N, D) codes laid out on ``layout``'s (h, w) grid (the grid fixes the size)."""
        h, zq = self.temporal(token_map(z_q, layout, "movq"))
        h = self.conv_in(h)
        for block in self.mid:
            h = block(h, zq)
        for level in self.conv_blocks:
            for j, block in enumerate(level.res):
                h = block(h, zq)
                if len(level.attn):
                    h = level.attn[j](h, zq)
            h = level.upsample(h)
        y = self.conv_out(F.silu(self.norm_out(h, zq)))
        return (y - self.output_shift) / self.output_scale
