"""``titok``: the 1-D tokenizer decoder — latent tokens plus a grid of mask tokens through a ViT."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from discotok.decoders.base import Decoder
from discotok.nn.vit import GridPosEmbed, PatchHead, Transformer, grid_size, init_vit_weights
from discotok.registry import DECODERS
from discotok.layout import Layout


@DECODERS.register("titok")
class TiTokDecoder(Decoder):
    """Quantized latents (B, k, D), k <= N, -> images (B, C, H, W).

    The latents are projected to ``width``; positions k..N-1, and positions at or past
    ``keep[b]`` when ``keep`` is given (nested dropout), become the learned ``mask_token``.
    A grid of ``patch_token`` queries, one per p x p patch of the output, joins them;
    after the transformer a patch head (linear, or with ``head_mlp_ratio`` > 0 an MLP with
    tanh) maps the grid back to pixels. The output size is ``image_size`` (the base of the
    patch positions) unless ``forward`` gets another.
    """

    masks_tokens = True

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
        out_channels: int = 3,
        head_mlp_ratio: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.out_channels = out_channels
        self.patch_size = patch_size
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.embed = nn.Linear(latent_dim, width)
        self.mask_token = nn.Parameter(torch.empty(1, 1, width))
        self.latent_pos_embed = nn.Parameter(torch.empty(1, num_tokens, width))
        self.patch_token = nn.Parameter(torch.empty(1, 1, width))
        self.pos_embed = GridPosEmbed(grid_size(self.image_size, patch_size), width)
        self.transformer = Transformer(width, depth, heads, mlp_ratio)
        self.head = PatchHead(width, out_channels, patch_size, head_mlp_ratio)
        for p in (self.mask_token, self.latent_pos_embed, self.patch_token):
            nn.init.trunc_normal_(p, std=0.02)
        self.apply(init_vit_weights)

    def latents(self, z_q: Tensor, keep: Tensor | None) -> Tensor:
        """(B, k, D) -> (B, N, width): projected, padded and dropped positions masked, positions added."""
        b, k, n = z_q.shape[0], z_q.shape[1], self.num_tokens
        limit = torch.full((b,), k, device=z_q.device)
        if keep is not None:
            if keep.shape != (b,) or keep.min() < 1 or keep.max() > n:
                raise ValueError(f"keep must have shape ({b},) and values in 1..{n}, got {tuple(keep.shape)}")
            limit = torch.minimum(limit, keep.to(z_q.device))
        h = F.pad(self.embed(z_q), (0, 0, 0, n - k))
        dropped = torch.arange(n, device=z_q.device) >= limit[:, None]
        return torch.where(dropped[..., None], self.mask_token.to(h.dtype), h) + self.latent_pos_embed

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
        """Decode a prefix (B, k, D), 1 <= k <= N, of a sequence layout to (B, C, H, W)."""
        k = z_q.shape[1]
        if layout.kind != "sequence" or not 1 <= k <= min(layout.num_tokens, self.num_tokens):
            raise ValueError(
                f"titok decoder needs a sequence layout and 1..{self.num_tokens} tokens, got {k} tokens on {layout}"
            )
        grid = grid_size(size if size is not None else self.image_size, self.patch_size)
        patches = (self.patch_token + self.pos_embed(grid)).expand(z_q.shape[0], -1, -1)
        h = self.transformer(torch.cat([patches.to(z_q.dtype), self.latents(z_q, keep)], dim=1))
        return self.head(h[:, : patches.shape[1]], grid)
