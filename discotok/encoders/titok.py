"""``titok``: a 1-D tokenizer encoder (TiTok) — a ViT over patches plus N learnable latent tokens."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from discotok.nn.vit import GridPosEmbed, PatchEmbed, Transformer, grid_size, init_vit_weights, rescale
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

    Options for TiTok's published checkpoints (``discotok convert titok``), off by default:
    ``class_token`` prepends one learned token to the patches; ``pre_norm`` puts a LayerNorm before the
    transformer; ``norm_eps`` is the eps of the transformer blocks' LayerNorms
    (timm's 1e-6; TiTok's 1e-5); ``legacy_reshape`` reads the final (B, N, width) latents through a reshape to
    (B, width, N), not a transpose, as TiTok's ``is_legacy`` models do (so each output token mixes
    features of several latents, and a prefix is not self-contained); ``pixel_range`` is the value range
    the network was trained on: inputs in [-1, 1] are mapped onto it first (TiTok's: [0, 1]).
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
        class_token: bool = False,
        pre_norm: bool = False,
        norm_eps: float = 1e-6,
        legacy_reshape: bool = False,
        pixel_range: Sequence[float] = (-1.0, 1.0),
    ) -> None:
        super().__init__()
        if num_tokens < 1:
            raise ValueError(f"num_tokens must be at least 1, got {num_tokens}")
        self.num_tokens = num_tokens
        self.sequence_length = num_tokens
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.legacy_reshape = bool(legacy_reshape)
        self.pixel_range = (float(pixel_range[0]), float(pixel_range[1]))
        self.class_token = nn.Parameter(torch.empty(1, 1, width)) if class_token else None
        self.norm_pre = nn.LayerNorm(width) if pre_norm else nn.Identity()
        self.patch_embed = PatchEmbed(in_channels, width, patch_size)
        self.pos_embed = GridPosEmbed(grid_size(self.image_size, patch_size), width)
        self.latent_tokens = nn.Parameter(torch.empty(1, num_tokens, width))
        self.latent_pos_embed = nn.Parameter(torch.empty(1, num_tokens, width))
        self.transformer = Transformer(width, depth, heads, mlp_ratio, norm_eps)
        self.proj = nn.Linear(width, latent_dim)
        nn.init.trunc_normal_(self.latent_tokens, std=0.02)
        nn.init.trunc_normal_(self.latent_pos_embed, std=0.02)
        if self.class_token is not None:
            nn.init.trunc_normal_(self.class_token, std=0.02)
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
        patches, grid = self.patch_embed(rescale(x, (-1.0, 1.0), self.pixel_range))
        patches = patches + self.pos_embed(grid)
        if self.class_token is not None:  # the class token counts as a patch
            patches = torch.cat([self.class_token.expand(x.shape[0], -1, -1).to(patches.dtype), patches], dim=1)
        # with causal latents a prefix is self-contained (unless the legacy reshape mixes all N)
        run = k if self.causal and not self.legacy_reshape else self.num_tokens
        latents = (self.latent_tokens + self.latent_pos_embed)[:, :run].expand(x.shape[0], -1, -1)
        mask = self.attention_mask(patches.shape[1], run, x.device)
        h = self.transformer(self.norm_pre(torch.cat([patches, latents], dim=1)), attn_mask=mask)
        h = h[:, patches.shape[1] :]
        if self.legacy_reshape:  # the (n d) values re-read as (d n)
            h = rearrange(rearrange(h, "b n d -> b (n d)"), "b (d n) -> b n d", n=h.shape[1])
        return EncoderOutput(self.proj(h[:, :k]), self.token_layout())
