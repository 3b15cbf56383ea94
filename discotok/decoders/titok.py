"""``titok``: the 1-D tokenizer decoder — latent tokens plus a grid of mask tokens through a ViT."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from discotok.decoders.base import Decoder
from discotok.nn.vit import GridPosEmbed, PatchHead, Transformer, grid_size, init_vit_weights, rescale
from discotok.registry import DECODERS
from discotok.layout import Layout


@DECODERS.register("titok")
class TiTokDecoder(Decoder):
    """Quantized latents (B, k, D), k <= N, -> images (B, C, H, W).

    The latents are projected to ``width``; positions k..N-1, and positions at or past
    ``keep[b]`` when ``keep`` is given (nested dropout), become the learned ``mask_token``
    (``missing_tokens="mask"``), or with ``missing_tokens="drop"`` take no part: nothing attends to
    them, as if only the first k were decoded (One-D-Piece).
    A grid of ``patch_token`` queries, one per p x p patch of the output, joins them;
    after the transformer a patch head (linear, or with ``head_mlp_ratio`` > 0 an MLP with
    tanh) maps the grid back to pixels. The output size is ``image_size`` (the base of the
    patch positions) unless ``forward`` gets another.

    Options for TiTok's published checkpoints (``discotok convert titok``), off by default:
    ``class_token`` prepends one learned token to the patch queries; ``pre_norm`` puts a LayerNorm before
    the transformer; ``norm_eps`` is the eps of the transformer blocks' LayerNorms
    (timm's 1e-6; TiTok's 1e-5); ``out_conv`` adds a 3x3 convolution after the patch head (TiTok's single-stage
    models); ``pixel_range`` is the value range the network outputs (TiTok's: [0, 1]), mapped onto
    [-1, 1]. ``pixel_decoder`` (a registered grid decoder's spec, e.g. ``maskgit_vqgan`` with
    ``soft_codes``) makes the decoder two-stage: the head gives ``head_channels`` values per patch (TiTok:
    logits over MaskGIT-VQGAN's 1024 codes) and that decoder turns this grid of tokens into the image; its
    upsampling factor must be ``patch_size``.

    Text guidance (TA-TiTok), off unless both are > 0: ``text_context_length`` L and ``text_embed_dim`` E make
    the decoder ``conditioned``: ``forward`` needs ``condition`` (B, L, E), a CLIP text encoder's per-token
    output ((B, 77, 768) as published), projected to ``width`` (``text_proj``), given positions
    (``text_pos_embed``) and appended after the latent tokens.
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
        class_token: bool = False,
        pre_norm: bool = False,
        norm_eps: float = 1e-6,
        out_conv: bool = False,
        pixel_range: Sequence[float] = (-1.0, 1.0),
        pixel_decoder: dict | None = None,
        head_channels: int = 0,
        missing_tokens: str = "mask",
        text_context_length: int = 0,
        text_embed_dim: int = 0,
    ) -> None:
        super().__init__()
        if missing_tokens not in ("mask", "drop"):
            raise ValueError(f"missing_tokens must be 'mask' or 'drop', got {missing_tokens!r}")
        self.missing_tokens = missing_tokens
        if pixel_decoder is not None and (head_channels < 1 or out_conv):
            raise ValueError("a pixel_decoder needs head_channels >= 1 (the values per patch it takes) and no out_conv")
        self.num_tokens = num_tokens
        self.pixel_decoder = DECODERS.build(pixel_decoder) if pixel_decoder is not None else None
        self.out_channels = out_channels if self.pixel_decoder is None else self.pixel_decoder.out_channels
        self.pixel_range = (float(pixel_range[0]), float(pixel_range[1]))
        self.patch_size = patch_size
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.embed = nn.Linear(latent_dim, width)
        self.class_token = nn.Parameter(torch.empty(1, 1, width)) if class_token else None
        self.norm_pre = nn.LayerNorm(width) if pre_norm else nn.Identity()
        self.mask_token = nn.Parameter(torch.empty(1, 1, width))
        self.latent_pos_embed = nn.Parameter(torch.empty(1, num_tokens, width))
        self.patch_token = nn.Parameter(torch.empty(1, 1, width))
        self.pos_embed = GridPosEmbed(grid_size(self.image_size, patch_size), width)
        self.transformer = Transformer(width, depth, heads, mlp_ratio, norm_eps)
        if self.pixel_decoder is None:
            self.head = PatchHead(width, out_channels, patch_size, head_mlp_ratio)
        else:
            self.head = PatchHead(width, head_channels, 1, head_mlp_ratio)
        self.out_conv = nn.Conv2d(out_channels, out_channels, 3, padding=1) if out_conv else nn.Identity()
        if (text_context_length > 0) != (text_embed_dim > 0):
            raise ValueError("text guidance needs both text_context_length and text_embed_dim > 0 (or neither), got "
                             f"{text_context_length} and {text_embed_dim}")
        self.conditioned = text_context_length > 0
        self.text_shape = (int(text_context_length), int(text_embed_dim))
        self.text_proj = nn.Linear(text_embed_dim, width) if self.conditioned else None
        self.text_pos_embed = nn.Parameter(torch.empty(1, text_context_length, width)) if self.conditioned else None
        self.condition_description = (f"condition=(B, {text_context_length}, {text_embed_dim}), a CLIP text "
                                      "encoder's per-token features (its text guidance)")
        for p in (self.mask_token, self.latent_pos_embed, self.patch_token, self.class_token, self.text_pos_embed):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        self.apply(init_vit_weights)

    def missing(self, z_q: Tensor, keep: Tensor | None) -> Tensor:
        """(B, N) True at the latent positions past the k given tokens, or at or past ``keep[b]``."""
        return missing_positions(z_q, keep, self.num_tokens)

    def latents(self, z_q: Tensor, keep: Tensor | None) -> Tensor:
        """(B, k, D) -> (B, N, width): projected, padded and dropped positions masked, positions added."""
        h = F.pad(self.embed(z_q), (0, 0, 0, self.num_tokens - z_q.shape[1]))
        return torch.where(self.missing(z_q, keep)[..., None], self.mask_token.to(h.dtype), h) + self.latent_pos_embed

    def text(self, condition: Tensor | None, batch: int) -> list[Tensor]:
        """The projected text guidance tokens [(B, L, width)] of a conditioned decoder; [] for an unconditioned
        one (``ValueError`` for a missing, superfluous or mis-shaped ``condition``)."""
        if not self.conditioned:
            if condition is not None:
                raise ValueError("this titok decoder has no text guidance (text_context_length 0): "
                                 "it takes no condition")
            return []
        if condition is None:
            raise ValueError(f"this TA-TiTok decoder needs {self.condition_description}")
        if tuple(condition.shape) != (batch, *self.text_shape):
            raise ValueError(f"condition must have shape ({batch}, {self.text_shape[0]}, {self.text_shape[1]}) (the "
                             f"ids' batch, then the text guidance's length and width), got {tuple(condition.shape)}")
        return [self.text_proj(condition) + self.text_pos_embed]

    def attention_mask(self, z_q: Tensor, keep: Tensor | None, num_queries: int, num_after: int = 0) -> Tensor | None:
        """With ``missing_tokens="drop"`` and latents missing, (B, 1, 1, L): no position attends to them
        (the same as decoding without them); else None. ``num_queries`` tokens come before the latents,
        ``num_after`` (the text guidance) after them."""
        if self.missing_tokens != "drop":
            return None
        missing = self.missing(z_q, keep)
        if not missing.any():
            return None
        return F.pad(~missing, (num_queries, num_after), value=True)[:, None, None, :]

    @property
    def last_layer(self) -> nn.Parameter | None:
        """The weight of the last layer to pixels: the linear patch head's, the ``out_conv``'s or the pixel
        decoder's (VQGAN's adaptive adversarial weight measures gradients there)."""
        if self.pixel_decoder is not None:
            return self.pixel_decoder.last_layer
        return self.out_conv.weight if isinstance(self.out_conv, nn.Conv2d) else self.head.proj.weight

    def alignment_layer(self) -> str:
        return f"transformer.blocks.{(len(self.transformer.blocks) - 1) // 2}"

    def forward(
        self, z_q: Tensor, layout: Layout, keep: Tensor | None = None, size: Sequence[int] | None = None,
        lengths: Tensor | None = None, condition: Tensor | None = None,
    ) -> Tensor:
        """Decode a prefix (B, k, D), 1 <= k <= N, of a sequence layout to (B, C, H, W); ``condition`` (B, L, E):
        the text guidance a conditioned decoder needs (see the class docstring)."""
        k = z_q.shape[1]
        if layout.kind != "sequence" or not 1 <= k <= min(layout.num_tokens, self.num_tokens):
            raise ValueError(
                f"titok decoder needs a sequence layout and 1..{self.num_tokens} tokens, got {k} tokens on {layout}"
            )
        size = tuple(size if size is not None else self.image_size)
        grid = grid_size(size, self.patch_size)
        b = z_q.shape[0]
        patches = (self.patch_token + self.pos_embed(grid)).expand(b, -1, -1)
        first = [] if self.class_token is None else [self.class_token.expand(b, -1, -1)]
        queries = [t.to(z_q.dtype) for t in (*first, patches)]
        text = [t.to(z_q.dtype) for t in self.text(condition, b)]
        mask = self.attention_mask(z_q, keep, sum(q.shape[1] for q in queries), sum(t.shape[1] for t in text))
        tokens = torch.cat([*queries, self.latents(z_q, keep), *text], dim=1)
        h = self.transformer(self.norm_pre(tokens), attn_mask=mask)
        h = h[:, len(first) : len(first) + patches.shape[1]]
        if self.pixel_decoder is None:
            return rescale(self.out_conv(self.head(h, grid)), self.pixel_range, (-1.0, 1.0))
        x = self.pixel_decoder(self.head.features(h), Layout("grid", grid))
        if tuple(x.shape[-2:]) != size:
            raise ValueError(f"the pixel decoder gives {tuple(x.shape[-2:])} images from a {grid} grid, not {size}: "
                             f"its upsampling factor must be the patch size {self.patch_size}")
        return rescale(x, self.pixel_range, (-1.0, 1.0))


def missing_positions(z_q: Tensor, keep: Tensor | None, num_tokens: int) -> Tensor:
    """(B, num_tokens) True at the positions past the k tokens of ``z_q`` (B, k, D), or at or past ``keep[b]``."""
    b, k, n = z_q.shape[0], z_q.shape[1], num_tokens
    limit = torch.full((b,), k, device=z_q.device)
    if keep is not None:
        if keep.shape != (b,) or keep.min() < 1 or keep.max() > n:
            raise ValueError(f"keep must have shape ({b},) and values in 1..{n}, got {tuple(keep.shape)}")
        limit = torch.minimum(limit, keep.to(z_q.device))
    return torch.arange(n, device=z_q.device) >= limit[:, None]
