"""``taming``: VQGAN's convolutional encoder (taming-transformers, MaskGIT, LlamaGen); N = h*w tokens on a grid.

``num_res_blocks`` residual blocks per level (widths ``channels * channel_mult``), self-attention after each
block of the lowest-resolution level, a downsampling between levels (stride-2 convolution padded right and
bottom), a middle of residual block, attention and residual block, then GroupNorm, SiLU and a 3x3
convolution to ``latent_dim``. The module names follow LlamaGen's, so its checkpoints convert by renaming
the residual blocks' layers only (``discotok convert llamagen``).

Options for other VQGANs (their defaults keep the plain VQGAN): ``attn_levels`` puts the attention on other
levels (Chameleon's has none but the middle's), ``heads`` splits it into heads, ``embed_dim`` adds a 1x1
``quant_conv`` to that width (Chameleon). ``temporal_downsample`` (a power of two) is Emu3's MoVQ encoder:
the image is taken as that many identical frames (as ``Emu3VQVAE.encode`` repeats it), the frames' latents
go through log2(temporal_downsample) causal temporal downsamplings (each followed by SiLU) down to one frame,
``num_res_blocks`` temporal residual blocks and a causal (3, 1, 1) ``quant_conv`` to ``embed_dim``
(``discotok.nn.temporal``); the 2-D part runs once, since every frame is the same image.
``downsamples`` (default ``len(channel_mult) - 1``) downsamples after the first that many levels only
(Cosmos-Tokenizer's DI8x8 has three levels and one downsampling). ``input_scale`` / ``input_shift`` (one per
channel) record a publisher's preprocessing: the network sees ``x * scale + shift`` of our images ``x`` in
[-1, 1] (for a processor that rescales pixels p in 0..255 by r and normalises by mean and std:
scale = 127.5 r / std, shift = (127.5 r - mean) / std).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from einops import rearrange, repeat
from torch import Tensor, nn

from discotok.encoders.base import Encoder, EncoderOutput, check_image_batch
from discotok.layout import Layout
from discotok.nn.conv import AttnBlock, Downsample, ResBlock, channel_values, group_norm
from discotok.nn.temporal import CausalConv3d, TemporalDownsample, TemporalResBlock
from discotok.registry import ENCODERS


@ENCODERS.register("taming")
class TamingEncoder(Encoder):
    """Images (B, in_channels, H, W) -> (B, H/f * W/f, embed_dim or latent_dim), f = 2^downsamples."""

    def __init__(
        self,
        latent_dim: int,
        in_channels: int = 3,
        channels: int = 128,
        channel_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        attn_levels: Sequence[int] | None = None,
        heads: int = 1,
        embed_dim: int | None = None,
        temporal_downsample: int | None = None,
        input_scale: Sequence[float] | None = None,
        input_shift: Sequence[float] | None = None,
        downsamples: int | None = None,
    ) -> None:
        super().__init__()
        levels = len(channel_mult)
        attn_levels = {levels - 1} if attn_levels is None else {int(i) for i in attn_levels}
        if not attn_levels <= set(range(levels)):
            raise ValueError(f"attn_levels {sorted(attn_levels)} must lie in 0..{levels - 1}")
        downsamples = levels - 1 if downsamples is None else int(downsamples)
        if not 0 <= downsamples <= levels - 1:
            raise ValueError(f"downsamples must lie in 0..{levels - 1} (one between levels), got {downsamples}")
        frames = temporal_downsample
        if frames is not None and (frames < 1 or frames & (frames - 1)):
            raise ValueError(f"temporal_downsample must be a power of two, got {temporal_downsample}")
        if temporal_downsample is not None and embed_dim is None:
            raise ValueError("temporal_downsample (Emu3's MoVQ encoder) needs embed_dim (its quant_conv's width)")
        self.in_channels = in_channels
        self.register_buffer("input_scale", channel_values(input_scale, 1.0, in_channels), persistent=False)
        self.register_buffer("input_shift", channel_values(input_shift, 0.0, in_channels), persistent=False)
        self.frames = temporal_downsample
        self.downsample_factor = 2**downsamples
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.conv_blocks = nn.ModuleList()
        width = channels
        for i, mult in enumerate(channel_mult):
            level = nn.Module()
            level.res = nn.ModuleList(ResBlock(width if j == 0 else channels * mult, channels * mult)
                                      for j in range(num_res_blocks))
            width = channels * mult
            attn = num_res_blocks if i in attn_levels else 0
            level.attn = nn.ModuleList(AttnBlock(width, heads) for _ in range(attn))
            level.downsample = Downsample(width, asymmetric=True) if i < downsamples else nn.Identity()
            self.conv_blocks.append(level)
        self.mid = nn.ModuleList([ResBlock(width, width), AttnBlock(width, heads), ResBlock(width, width)])
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, latent_dim, 3, padding=1)
        self.quant_conv: nn.Module = nn.Identity()
        if temporal_downsample is not None:
            self.time_conv = nn.ModuleList(TemporalDownsample(latent_dim) for _ in range(int(math.log2(frames))))
            self.time_res_stack = nn.ModuleList(TemporalResBlock(latent_dim, latent_dim) for _ in range(num_res_blocks))
            self.quant_conv = CausalConv3d(latent_dim, embed_dim, (3, 1, 1))
        elif embed_dim is not None:
            self.quant_conv = nn.Conv2d(latent_dim, embed_dim, 1)

    def token_layout(self, size: Sequence[int]) -> Layout:
        f = self.downsample_factor
        return Layout("grid", (size[0] // f, size[1] // f))

    def alignment_layer(self) -> str:
        return "mid.0"

    def forward(self, x: Tensor, lengths: Tensor | None = None, num_tokens: int | None = None) -> EncoderOutput:
        """Images (B, C, H, W) -> one token per cell of the (H/f, W/f) grid (no lengths, no prefix)."""
        check_image_batch(x, self.in_channels, self.downsample_factor)
        h = self.conv_in(self.pixels_in(x))
        for level in self.conv_blocks:
            for j, block in enumerate(level.res):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            h = level.downsample(h)
        for block in self.mid:
            h = block(h)
        h = self.conv_out(nn.functional.silu(self.norm_out(h)))
        h = self.quant_conv(h) if self.frames is None else self.temporal(h)
        return EncoderOutput(rearrange(h, "b d h w -> b (h w) d"), Layout("grid", tuple(h.shape[-2:])))

    def pixels_in(self, x: Tensor) -> Tensor:
        """What ``conv_in`` sees of the images: the publisher's preprocessing ``x * input_scale + input_shift``."""
        return x * self.input_scale + self.input_shift

    def temporal(self, h: Tensor) -> Tensor:
        """Emu3's temporal layers on the latents (B, C, h, w) of an image repeated as ``temporal_downsample`` frames."""
        h = repeat(h, "b c h w -> b c t h w", t=self.frames)
        for conv in self.time_conv:
            h = nn.functional.silu(conv(h))
        for block in self.time_res_stack:
            h = block(h)
        return rearrange(self.quant_conv(h), "b c 1 h w -> b c h w")
