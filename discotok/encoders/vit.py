"""``vit``: a vision-transformer encoder on a patch grid; N = (H/p)(W/p) tokens."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from discotok.nn.vit import GridPosEmbed, PatchEmbed, Transformer, grid_size, init_vit_weights
from discotok.registry import ENCODERS
from discotok.encoders.base import Encoder, EncoderOutput, check_image_batch
from discotok.layout import Layout


@ENCODERS.register("vit")
class ViTEncoder(Encoder):
    """Patch embedding + positions + transformer; one token per p x p patch, projected to ``latent_dim``.

    ``image_size`` is the base (H, W) of the learned positions; other sizes divisible by
    ``patch_size`` resample them (bicubic).
    """

    def __init__(
        self,
        latent_dim: int,
        image_size: Sequence[int] = (256, 256),
        patch_size: int = 16,
        width: int = 768,
        depth: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.patch_embed = PatchEmbed(in_channels, width, patch_size)
        self.pos_embed = GridPosEmbed(grid_size(self.image_size, patch_size), width)
        self.transformer = Transformer(width, depth, heads, mlp_ratio)
        self.proj = nn.Linear(width, latent_dim)
        self.apply(init_vit_weights)

    def token_layout(self, image_size: Sequence[int]) -> Layout:
        """The token grid for images of ``image_size`` (H, W)."""
        return Layout("grid", grid_size(image_size, self.patch_size))

    def alignment_layer(self) -> str:
        return f"transformer.blocks.{(len(self.transformer.blocks) - 1) // 2}"

    def forward(self, x: Tensor, lengths: Tensor | None = None, num_tokens: int | None = None) -> EncoderOutput:
        """Images (B, C, H, W) -> one token per patch (no lengths, no prefix)."""
        check_image_batch(x, self.in_channels, self.patch_size)
        tokens, grid = self.patch_embed(x)
        h = self.transformer(tokens + self.pos_embed(grid))
        return EncoderOutput(self.proj(h), Layout("grid", grid))
