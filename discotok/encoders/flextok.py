"""``flextok``: FlexTok's encoder, a 1-D register encoder over the latents of a frozen KL-VAE (apple/ml-flextok).

The image goes through the VAE's encoder (diffusers' ``AutoencoderKL``, which is VQGAN's convolutional
encoder without attention in its levels: the ``taming`` encoder with ``attn_levels: []``, its 1x1
``quant_conv`` to 2C channels); the posterior's mean (the first C channels) times ``scaling_factor`` is cut into
``patch_size`` x ``patch_size`` patches, projected to ``width``, given FlexTok's fixed 2-D sine-cosine
positions and followed by ``num_tokens`` learned registers. A ``FlexTransformer`` runs over [patches,
registers]; with ``causal`` (FlexTok's ``causal_last``) register i sees all patches and registers 0..i only
(patches see patches), so the first k registers do not depend on the rest and ``num_tokens=k`` runs only k.
The registers' outputs go through a LayerNorm and a linear map to ``latent_dim`` (the quantizer's, FSQ's
levels). Encoding uses the posterior's mean, not a sample, so ids are deterministic.

``freeze_vae`` (default True, as FlexTok trains its tokenizer on a frozen pretrained VAE, whose encoding it runs
under ``no_grad``): the VAE's encoder takes no gradients, stays in eval mode and is left out of the optimizer; with
False it trains with the transformer (a convolutional stem started from the VAE).

``vae``: ``channels``, ``channel_mult``, ``num_res_blocks`` (diffusers' ``block_out_channels`` /
``layers_per_block``), ``latent_channels`` and ``scaling_factor``. ``transformer``: ``FlexTransformer``'s
settings (``width``, ``depth``, ``head_dim``, ``mlp_ratio``, ``gated_mlp``, ``activation``, biases, ``qk_norm``,
``norm``). In training (nested dropout) ``EncoderOutput.keep`` holds each sample's prefix length, drawn as the
``flexible`` encoder draws it; the ``flextok`` decoder masks the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from discotok.encoders.base import Encoder, EncoderOutput, check_image_batch
from discotok.encoders.flexible import check_k_distribution, draw_keep
from discotok.encoders.taming import TamingEncoder
from discotok.layout import Layout
from discotok.nn.frozen import FrozenParts
from discotok.nn.flex_transformer import FlexTransformer, layer_norm, patchify, prefix_causal, sincos_grid
from discotok.registry import ENCODERS

VAE_DEFAULTS = {"channels": 128, "channel_mult": [1, 2, 4, 4], "num_res_blocks": 2, "latent_channels": 16,
                "scaling_factor": 1.0}
TRANSFORMER_DEFAULTS = {"width": 768, "depth": 12, "head_dim": 64, "mlp_ratio": 4.0, "gated_mlp": True,
                        "activation": "silu", "qkv_bias": False, "proj_bias": False, "mlp_bias": False,
                        "qk_norm": True, "norm": {"affine": False, "bias": False, "eps": 1e-5}}


def settings(given: dict | None, defaults: dict, what: str) -> dict[str, Any]:
    """``given`` over ``defaults``; ``ValueError`` naming any key that is not a setting of ``what``."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{what}: unknown setting(s) {unknown}; settings: {sorted(defaults)}")
    return {**defaults, **given}


def vae_encoder(vae: dict) -> TamingEncoder:
    """AutoencoderKL's encoder as a ``taming`` encoder: no attention in the levels, conv_out and quant_conv to 2C."""
    c2 = 2 * int(vae["latent_channels"])
    return TamingEncoder(c2, channels=int(vae["channels"]), channel_mult=list(vae["channel_mult"]),
                         num_res_blocks=int(vae["num_res_blocks"]), attn_levels=[], embed_dim=c2)


def vae_latents(vae: TamingEncoder, x: Tensor, latent_channels: int, scaling_factor: float) -> Tensor:
    """The scaled posterior mean (B, C, H/f, W/f) of images ``x`` (B, 3, H, W) under the VAE encoder ``vae``."""
    moments = vae(x)
    h, w = moments.layout.shape
    mean = moments.z[..., :latent_channels] * scaling_factor
    return rearrange(mean, "b (h w) c -> b c h w", h=h, w=w)


@ENCODERS.register("flextok")
class FlexTokEncoder(FrozenParts, Encoder):
    """Images (B, 3, H, W) in [-1, 1] -> (B, num_tokens, latent_dim) register latents (a sequence layout)."""

    draws_prefix = True

    def __init__(
        self,
        latent_dim: int,
        num_tokens: int = 256,
        image_size: Sequence[int] = (256, 256),
        patch_size: int = 2,
        pos_grid: Sequence[int] = (16, 16),
        vae: dict | None = None,
        transformer: dict | None = None,
        causal: bool = True,
        head_norm: bool = True,
        k_distribution: str = "pow2",
        seed: int = 0,
        freeze_vae: bool = True,
    ) -> None:
        super().__init__()
        self.vae_settings = settings(vae, VAE_DEFAULTS, "flextok encoder vae")
        self.transformer_settings = settings(transformer, TRANSFORMER_DEFAULTS, "flextok encoder transformer")
        width = int(self.transformer_settings["width"])
        self.in_channels = 3
        self.num_tokens = int(num_tokens)
        self.sequence_length = self.num_tokens
        self.image_size = tuple(int(s) for s in image_size)
        self.patch_size = int(patch_size)
        self.latent_channels = int(self.vae_settings["latent_channels"])
        self.scaling_factor = float(self.vae_settings["scaling_factor"])
        self.causal = bool(causal)
        self.k_distribution = check_k_distribution(k_distribution)
        self.seed = int(seed)
        self.vae = vae_encoder(self.vae_settings)
        self.patch_embed = nn.Linear(self.latent_channels * self.patch_size**2, width)
        self.register_buffer("pos_embed", sincos_grid(int(pos_grid[0]), int(pos_grid[1]), width))
        self.registers = nn.Parameter(torch.empty(self.num_tokens, width))
        nn.init.trunc_normal_(self.registers, std=0.02)
        self.transformer = FlexTransformer(**self.transformer_settings)
        self.head_norm = layer_norm(width, **self.transformer_settings["norm"]) if head_norm else nn.Identity()
        self.head = nn.Linear(width, latent_dim)
        nn.init.xavier_uniform_(self.patch_embed.weight)
        nn.init.zeros_(self.patch_embed.bias)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.freeze_vae = bool(freeze_vae)
        if self.freeze_vae:
            self.freeze("vae")

    @property
    def downsample_factor(self) -> int:
        """Pixels per patch side: the VAE's downsampling times the patch size."""
        return self.vae.downsample_factor * self.patch_size

    def token_layout(self, size: Sequence[int]) -> Layout:
        return Layout("sequence", (self.num_tokens,))

    def latents(self, x: Tensor) -> Tensor:
        """The VAE's scaled posterior mean (B, C, H/f, W/f) of images ``x`` (B, 3, H, W) (no gradient when frozen)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_vae):
            return vae_latents(self.vae, x, self.latent_channels, self.scaling_factor)

    def patch_tokens(self, latents: Tensor) -> Tensor:
        """Scaled VAE latents (B, C, h, w) -> patch tokens (B, h/p * w/p, width) with their positions."""
        patches = self.patch_embed(patchify(latents, self.patch_size))
        gh, gw = patches.shape[1:3]
        if gh > self.pos_embed.shape[2] or gw > self.pos_embed.shape[3]:
            raise ValueError(f"a grid of {gh}x{gw} patches exceeds the positions' {tuple(self.pos_embed.shape[2:])}")
        pos = rearrange(self.pos_embed[:, :, :gh, :gw], "1 d h w -> 1 h w d")
        return rearrange(patches + pos.to(patches.dtype), "b h w d -> b (h w) d")

    def forward(self, x: Tensor, lengths: Tensor | None = None, num_tokens: int | None = None) -> EncoderOutput:
        """Images -> the first ``num_tokens`` (default all) register latents; in training also draws ``keep``."""
        check_image_batch(x, self.in_channels, self.downsample_factor)
        tokens = self.patch_tokens(self.latents(x))
        k = self.num_tokens if num_tokens is None or not self.causal else int(num_tokens)
        registers = self.registers[:k].to(tokens.dtype).expand(x.shape[0], -1, -1)
        p = tokens.shape[1]
        mask = prefix_causal(p, k, x.device) if self.causal else None
        h = self.transformer(torch.cat([tokens, registers], dim=1), mask)
        z = self.head(self.head_norm(h[:, p:]))[:, : num_tokens or self.num_tokens]
        out = EncoderOutput(z, Layout("sequence", (z.shape[1],)))
        if self.training and num_tokens is None:
            out.keep = draw_keep(self.num_tokens, self.k_distribution, self.seed, int(self.steps), x.shape[0])
            out.keep = out.keep.to(x.device)
            self.steps.add_(1)
        return out
