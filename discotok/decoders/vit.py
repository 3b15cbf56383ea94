"""``vit``: a vision-transformer decoder from a token grid back to pixels."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from discotok.decoders.base import Decoder, check_grid_layout
from discotok.nn.vit import GridPosEmbed, PatchHead, Transformer, grid_size, init_vit_weights
from discotok.registry import DECODERS
from discotok.layout import Layout


@DECODERS.register("vit")
class ViTDecoder(Decoder):
    """Tokens (B, h*w, latent_dim) -> width, positions, transformer, linear patch head -> (B, C, hp, wp)."""

    def __init__(
        self,
        latent_dim: int,
        image_size: Sequence[int] = (256, 256),
        patch_size: int = 16,
        width: int = 768,
        depth: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.patch_size = patch_size
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.embed = nn.Linear(latent_dim, width)
        self.pos_embed = GridPosEmbed(grid_size(self.image_size, patch_size), width)
        self.transformer = Transformer(width, depth, heads, mlp_ratio)
        self.head = PatchHead(width, out_channels, patch_size)
        self.apply(init_vit_weights)

    @property
    def last_layer(self) -> nn.Parameter:
        """The weight of the linear patch head (VQGAN's adaptive adversarial weight measures gradients there)."""
        return self.head.proj.weight

    def alignment_layer(self) -> str:
        return f"transformer.blocks.{(len(self.transformer.blocks) - 1) // 2}"

    def forward(
        self, z_q: Tensor, layout: Layout, keep: Tensor | None = None, size: Sequence[int] | None = None,
        lengths: Tensor | None = None,
    ) -> Tensor:
        """Decode (B, N, D) tokens laid out on ``layout``'s (h, w) grid to (B, C, h*p, w*p) (the grid fixes the size)."""
        check_grid_layout(z_q, layout, "vit")
        h = self.transformer(self.embed(z_q) + self.pos_embed(layout.shape))
        return self.head(h, layout.shape)
