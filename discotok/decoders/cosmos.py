"""``cosmos``: Cosmos-Tokenizer's image decoder, mirroring the ``cosmos`` encoder.

The ``taming`` decoder (upsampling after the first log2(spatial_compression / patch_size) levels decoded,
attention after each block of the ``attn_levels`` levels) whose ``conv_out`` gives ``patch_size``^2 Haar
wavelet bands per output channel, turned back into pixels by the inverse wavelet transform.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from discotok.decoders.taming import TamingDecoder
from discotok.nn.wavelet import haar_unpatch, wavelet_levels
from discotok.registry import DECODERS


@DECODERS.register("cosmos")
class CosmosDecoder(TamingDecoder):
    """Tokens (B, h*w, latent_dim) on a grid -> images (B, out_channels, h*f, w*f), f = ``spatial_compression``."""

    def __init__(
        self,
        latent_dim: int,
        out_channels: int = 3,
        channels: int = 128,
        channel_mult: Sequence[int] = (2, 4, 4),
        num_res_blocks: int = 2,
        attn_levels: Sequence[int] = (),
        patch_size: int = 4,
        spatial_compression: int = 16,
    ) -> None:
        upsamples = wavelet_levels(spatial_compression) - wavelet_levels(patch_size)
        if upsamples < 0:
            raise ValueError(f"spatial_compression {spatial_compression} is below the patch size {patch_size}")
        super().__init__(latent_dim, out_channels * patch_size**2, channels, channel_mult, num_res_blocks,
                         attn_levels=attn_levels, upsamples=upsamples)
        self.out_channels = out_channels
        self.patch_size = patch_size

    def pixels_out(self, h: Tensor) -> Tensor:
        """Pixels from ``conv_out``'s Haar wavelet bands."""
        return haar_unpatch(h, self.patch_size)
