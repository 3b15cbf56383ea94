"""``titok``: a 1-D tokenizer encoder (TiTok) — a ViT over patches plus N learnable latent tokens."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from discotok.nn.vit import GridPosEmbed, PatchEmbed, Transformer, grid_size, init_vit_weights
from discotok.registry import ENCODERS
from discotok.encoders.base import Encoder, EncoderOutput, check_image_batch
from discotok.layout import Layout


@ENCODERS.register("titok")
class TiTokEncoder(Encoder):
    """Patches and ``num_tokens`` latent tokens share one transformer; only the latents leave it.

    The sequence is ``[patches (h*w), latents (N)]``; the latents, each with its own
    learned position, are projected to ``latent_dim``: ``z`` is (B, N, latent_dim) with
    ``Layout("sequence", (N,))`` whatever the image size. ``image_size`` is the base
    (H, W) of the patch positions; any size divisible by ``patch_size`` resamples them.
    ``forward(x, num_tokens=k)`` returns the first k latents.
    """

    causal: bool = False

    def __init__(
        self,
        latent_dim: int,
        num_tokens: int = 64,
        image_size: Sequence[int] = (256, 256),
        patch_size: int = 16,
        width: int = 768,
        depth: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if num_tokens < 1:
            raise ValueError(f"num_tokens must be at least 1, got {num_tokens}")
        self.num_tokens = num_tokens
        self.sequence_length = num_tokens
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.patch_embed = PatchEmbed(in_channels, width, patch_size)
        self.pos_embed = GridPosEmbed(grid_size(self.image_size, patch_size), width)
        self.latent_tokens = nn.Parameter(torch.empty(1, num_tokens, width))
        self.latent_pos_embed = nn.Parameter(torch.empty(1, num_tokens, width))
        self.transformer = Transformer(width, depth, heads, mlp_ratio)
        self.proj = nn.Linear(width, latent_dim)
        nn.init.trunc_normal_(self.latent_tokens, std=0.02)
        nn.init.trunc_normal_(self.latent_pos_embed, std=0.02)
        self.apply(init_vit_weights)

    def token_layout(self, image_size: Sequence[int] | None = None) -> Layout:
        """``Layout("sequence", (N,))``: the token count does not depend on the image size."""
        return Layout("sequence", (self.num_tokens,))

    def check_num_tokens(self, num_tokens: int | None) -> int:
        """``num_tokens`` (None: N), or ``ValueError`` unless it lies in 1..N."""
        if num_tokens is None:
            return self.num_tokens
        if not 1 <= int(num_tokens) <= self.num_tokens:
            raise ValueError(f"num_tokens must lie in 1..{self.num_tokens}, got {num_tokens}")
        return int(num_tokens)

    def attention_mask(self, num_patches: int, num_latents: int, device: torch.device) -> Tensor | None:
        """The attention mask over ``[patches, latents]``; None: full attention."""
        return None

    def alignment_layer(self) -> str:
        return f"transformer.blocks.{(len(self.transformer.blocks) - 1) // 2}"

    def forward(self, x: Tensor, lengths: Tensor | None = None, num_tokens: int | None = None) -> EncoderOutput:
        """Images (B, C, H, W) -> ``z`` (B, k, latent_dim), the first k = ``num_tokens`` (default N) latents."""
        k = self.check_num_tokens(num_tokens)
        check_image_batch(x, self.in_channels, self.patch_size)
        patches, grid = self.patch_embed(x)
        patches = patches + self.pos_embed(grid)
        run = k if self.causal else self.num_tokens  # with causal latents a prefix is self-contained
        latents = (self.latent_tokens + self.latent_pos_embed)[:, :run].expand(x.shape[0], -1, -1)
        mask = self.attention_mask(patches.shape[1], run, x.device)
        h = self.transformer(torch.cat([patches, latents], dim=1), attn_mask=mask)
        return EncoderOutput(self.proj(h[:, patches.shape[1] : patches.shape[1] + k]), self.token_layout())
