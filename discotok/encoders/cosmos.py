"""``cosmos``: Cosmos-Tokenizer's image encoder (NVIDIA's DI8x8 / DI16x16 / CI tokenizers); N = h*w tokens.

The ``taming`` encoder behind a Haar wavelet patching (``discotok.nn.wavelet``): the image is split into
``patch_size``^2 wavelet bands (48 channels for RGB at patch size 4), then ``conv_in``, the levels of residual
blocks (attention after each block of the ``attn_levels`` levels; the published models have none but the
middle's) with downsampling after the first log2(spatial_compression / patch_size) levels only, the middle,
GroupNorm, SiLU and a 3x3 convolution to ``latent_dim`` (Cosmos's ``z_channels``). Published: channels 128,
``channel_mult`` [2, 4, 4], 2 residual blocks, patch size 4, spatial compression 8 (DI8x8) or 16 (DI16x16).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from discotok.encoders.taming import TamingEncoder
from discotok.nn.wavelet import haar_patch, wavelet_levels
from discotok.registry import ENCODERS


@ENCODERS.register("cosmos")
class CosmosEncoder(TamingEncoder):
    """Images (B, in_channels, H, W) -> (B, H/f * W/f, latent_dim), f = ``spatial_compression``."""

    def __init__(
        self,
        latent_dim: int,
        in_channels: int = 3,
        channels: int = 128,
        channel_mult: Sequence[int] = (2, 4, 4),
        num_res_blocks: int = 2,
        attn_levels: Sequence[int] = (),
        patch_size: int = 4,
        spatial_compression: int = 16,
    ) -> None:
        downsamples = wavelet_levels(spatial_compression) - wavelet_levels(patch_size)
        if downsamples < 0:
            raise ValueError(f"spatial_compression {spatial_compression} is below the patch size {patch_size}")
        super().__init__(latent_dim, in_channels * patch_size**2, channels, channel_mult, num_res_blocks,
                         attn_levels=attn_levels, downsamples=downsamples)
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.downsample_factor = spatial_compression

    def pixels_in(self, x: Tensor) -> Tensor:
        """The images' Haar wavelet bands (B, in_channels * patch_size^2, H / patch_size, W / patch_size)."""
        return haar_patch(x, self.patch_size)
