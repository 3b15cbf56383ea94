"""``flextok``: FlexTok's rectified-flow decoder in a KL-VAE's latent space, then the VAE's decoder (apple/ml-flextok).

Condition: the k quantized tokens (B, k, D) are projected to ``width`` (``from_latents``), padded to N, given
learned register positions, and every position at or past k (or ``keep[b]``) becomes the learned mask token
(FlexTok's ``MaskedNestedDropout``, which comes after the positions). The unconditional input of
classifier-free guidance replaces the whole condition by the learned null condition (``null_condition:
learned``), by one null token (``learned_token``) or by zeros (``zero``).

Velocity model: the noisy VAE latents (B, C, h, w) are cut into ``patch_size`` patches, projected, given fixed
2-D sine-cosine positions and followed by the condition; a ``FlexTransformer`` with adaLN-zero modulation by
the time embedding (``adaln_parts`` 2: one modulation for the patches, one for the registers) runs over
[patches, condition] (``causal``: FlexTok's ``causal_last`` mask); the patches' outputs go through a LayerNorm
(adaLN-modulated when ``head_adaln``) and a linear map back to latent patches: the velocity ``noise - x``.

Sampling (FlexTok's ``MinRFPipeline``): from noise at t = 1, ``timesteps`` Euler steps ``x <- x - v / timesteps``
at t = i / timesteps for i = timesteps..1; with ``guidance_scale`` s != 1 each step also runs the unconditional
input and combines ``v_u + s (v_c - v_u)`` (``guidance: cfg``) or FlexTok's normalised guidance (``guidance:
apg``, Sadat et al. 2024: the difference's running average with momentum ``apg_momentum``, its norm capped at
``apg_norm_threshold``, its part orthogonal to v_c plus ``apg_eta`` times its parallel part, added (s - 1) times).
The latents divided by ``vae.scaling_factor`` go through the VAE's ``post_quant_conv`` and decoder (the
``taming`` decoder without attention in its levels). The noise is ``forward``'s ``noise`` when given (B, C,
H/f, W/f), else drawn from a CPU generator seeded by ``seed``.

Training (FlexTok's ``MinRFNoiseModule`` and its decoder's dropouts): the decoder computes its own targets, the
images' scaled VAE latents (the posterior mean times ``scaling_factor``, as the ``flextok`` encoder computes them),
with a copy of the VAE's encoder (``vae_encoder``, built from the same ``vae`` settings and filled from the same
tensors by the converter; always frozen, in eval mode and run without gradients: the targets are constants). It
draws t (``time_sampling``: logit-normal, FlexTok's ``ln``, or uniform) and the noise e, forms
``x_t = (1 - t) x + t e`` (noise at t = 1, the convention the sampler integrates) and returns the velocity MSE
``|v_hat - (e - x)|^2``; its ``x_hat`` is the one-step estimate ``x_t - t v_hat`` through the VAE's decoder
(differentiable, for optional pixel terms). Nested dropout: positions at or past ``keep`` become the mask token;
then, with probability ``condition_dropout`` (FlexTok's ``dropout_prob``, 0.2), a sample's whole condition becomes
the unconditional input, so guidance has something to work with. ``freeze_vae`` (default True, as FlexTok, whose
VAE is a frozen pretrained model): the VAE's decoder and ``post_quant_conv`` take no gradients, stay in eval mode
and are left out of the optimizer; with False they train from the pixel terms on ``x_hat``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from discotok.decoders.base import GenerativeDecoder, GenerativeLoss
from discotok.decoders.flow import TIME_SAMPLING, FlowDraws, TimeEmbedding, check_timesteps, start_noise
from discotok.decoders.taming import TamingDecoder
from discotok.decoders.titok import missing_positions
from discotok.encoders.flextok import TRANSFORMER_DEFAULTS, VAE_DEFAULTS, settings, vae_encoder, vae_latents
from discotok.layout import Layout
from discotok.nn.frozen import FrozenParts
from discotok.nn.flex_transformer import (
    FlexTransformer, layer_norm, modulate, patchify, prefix_causal, sincos_grid, unpatchify,
)
from discotok.registry import DECODERS

NULL_CONDITIONS = ("learned", "learned_token", "zero")
GUIDANCES = ("cfg", "apg")


def vae_decoder(vae: dict) -> TamingDecoder:
    """AutoencoderKL's decoder (after its post_quant_conv) as a ``taming`` decoder without attention in the levels."""
    return TamingDecoder(int(vae["latent_channels"]), channels=int(vae["channels"]),
                         channel_mult=list(vae["channel_mult"]), num_res_blocks=int(vae["num_res_blocks"]),
                         attn_levels=[])


@DECODERS.register("flextok")
class FlexTokDecoder(FrozenParts, GenerativeDecoder):
    """Token prefixes (B, k, latent_dim), 1 <= k <= N -> images (B, 3, H, W) by rectified flow and the VAE."""

    masks_tokens = True

    def __init__(
        self,
        latent_dim: int,
        num_tokens: int = 256,
        image_size: Sequence[int] = (256, 256),
        patch_size: int = 2,
        pos_grid: Sequence[int] = (16, 16),
        vae: dict | None = None,
        transformer: dict | None = None,
        causal: bool = False,
        adaln_parts: int = 2,
        head_norm: bool = True,
        head_adaln: bool = True,
        null_condition: str = "learned",
        time_frequencies: int = 256,
        max_timestep: float = 1000.0,
        timesteps: int = 20,
        guidance_scale: float = 7.5,
        guidance: str = "apg",
        apg_momentum: float = -0.5,
        apg_norm_threshold: float = 2.5,
        apg_eta: float = 0.0,
        seed: int = 0,
        condition_dropout: float = 0.2,
        time_sampling: str = "logit_normal",
        freeze_vae: bool = True,
    ) -> None:
        super().__init__()
        self.vae_settings = settings(vae, VAE_DEFAULTS, "flextok decoder vae")
        self.transformer_settings = settings(transformer, TRANSFORMER_DEFAULTS, "flextok decoder transformer")
        if null_condition not in NULL_CONDITIONS:
            raise ValueError(f"null_condition must be one of {NULL_CONDITIONS}, got {null_condition!r}")
        if guidance not in GUIDANCES:
            raise ValueError(f"guidance must be one of {GUIDANCES}, got {guidance!r}")
        if adaln_parts not in (1, 2):
            raise ValueError(f"adaln_parts must be 1 (one modulation) or 2 (patches, registers), got {adaln_parts}")
        if not 0.0 <= condition_dropout < 1.0:
            raise ValueError(f"condition_dropout must lie in [0, 1), got {condition_dropout}")
        if time_sampling not in TIME_SAMPLING:
            raise ValueError(f"time_sampling must be one of {TIME_SAMPLING}, got {time_sampling!r}")
        width = int(self.transformer_settings["width"])
        self.out_channels = 3
        self.num_tokens = int(num_tokens)
        self.image_size = tuple(int(s) for s in image_size)
        self.patch_size = int(patch_size)
        self.latent_channels = int(self.vae_settings["latent_channels"])
        self.scaling_factor = float(self.vae_settings["scaling_factor"])
        self.causal = bool(causal)
        self.null_condition = null_condition
        self.timesteps = check_timesteps(timesteps)
        self.guidance_scale = float(guidance_scale)
        self.guidance = guidance
        self.apg = (float(apg_momentum), float(apg_norm_threshold), float(apg_eta))
        self.seed = int(seed)
        self.condition_dropout = float(condition_dropout)
        self.time_sampling = time_sampling
        self.freeze_vae = bool(freeze_vae)
        self.from_latents = nn.Linear(latent_dim, width)
        self.register_pos_embed = nn.Parameter(torch.empty(self.num_tokens, width))
        self.mask_token = nn.Parameter(torch.empty(width))
        self.null_token = nn.Parameter(torch.empty(width)) if null_condition != "zero" else None
        self.patch_embed = nn.Linear(self.latent_channels * self.patch_size**2, width)
        self.register_buffer("pos_embed", sincos_grid(int(pos_grid[0]), int(pos_grid[1]), width))
        self.time_embed = TimeEmbedding(width, time_frequencies, max_period=256.0, scale=1000.0 / float(max_timestep))
        self.transformer = FlexTransformer(**self.transformer_settings, adaln_parts=adaln_parts)
        self.head_norm = layer_norm(width, **self.transformer_settings["norm"]) if head_norm else nn.Identity()
        self.head_adaln = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width)) if head_adaln else None
        self.head = nn.Linear(width, self.latent_channels * self.patch_size**2)
        self.post_quant_conv = nn.Conv2d(self.latent_channels, self.latent_channels, 1)
        self.vae = vae_decoder(self.vae_settings)
        self.vae_encoder = vae_encoder(self.vae_settings)
        for p in (self.register_pos_embed, self.mask_token, self.null_token):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        for layer in (self.from_latents, self.patch_embed):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        for layer in (self.head, *([self.head_adaln[1]] if head_adaln else [])):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.freeze("vae_encoder", *(("post_quant_conv", "vae") if self.freeze_vae else ()))

    @property
    def downsample_factor(self) -> int:
        """Pixels per latent: the VAE's downsampling."""
        return 2 ** (len(self.vae_settings["channel_mult"]) - 1)

    def condition(self, z_q: Tensor, layout: Layout, keep: Tensor | None = None) -> Tensor:
        """The token condition (B, N, width): projected tokens with positions, the mask token where missing."""
        k = z_q.shape[1]
        if layout.kind != "sequence" or not 1 <= k <= min(layout.num_tokens, self.num_tokens):
            raise ValueError(
                f"flextok decoder needs a sequence layout and 1..{self.num_tokens} tokens, got {k} tokens on {layout}")
        h = F.pad(self.from_latents(z_q), (0, 0, 0, self.num_tokens - k)) + self.register_pos_embed
        missing = missing_positions(z_q, keep, self.num_tokens)
        return torch.where(missing[..., None], self.mask_token.to(h.dtype), h)

    def unconditional(self, cond: Tensor) -> Tensor:
        """The null condition in place of ``cond`` (B, N, width)."""
        if self.null_condition == "zero":
            return torch.zeros_like(cond)
        n = 1 if self.null_condition == "learned_token" else cond.shape[1]
        return self.null_token.to(cond.dtype).expand(cond.shape[0], n, -1)

    def velocity(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """The predicted velocity (B, C, h, w) at latents ``x_t``, times ``t`` (B,), under ``cond`` (B, n, width)."""
        patches = self.patch_embed(patchify(x_t, self.patch_size))
        gh, gw = patches.shape[1:3]
        if gh > self.pos_embed.shape[2] or gw > self.pos_embed.shape[3]:
            raise ValueError(f"a grid of {gh}x{gw} patches exceeds the positions' {tuple(self.pos_embed.shape[2:])}")
        pos = rearrange(self.pos_embed[:, :, :gh, :gw], "1 d h w -> 1 (h w) d")
        patches = rearrange(patches, "b h w d -> b (h w) d") + pos.to(patches.dtype)
        time = self.time_embed(t).to(patches.dtype)
        p, n = patches.shape[1], cond.shape[1]
        mask = prefix_causal(p, n, x_t.device) if self.causal else None
        h = self.transformer(torch.cat([patches, cond.to(patches.dtype)], dim=1), mask, time, (p, n))[:, :p]
        h = self.head_norm(h)
        if self.head_adaln is not None:
            shift, scale = self.head_adaln(time)[:, None, :].chunk(2, dim=-1)
            h = modulate(h, shift, scale)
        out = rearrange(self.head(h), "b (h w) d -> b h w d", h=gh, w=gw)
        return unpatchify(out, self.patch_size)

    def guided(self, v_cond: Tensor, v_uncond: Tensor, scale: float, running: Tensor | None) -> tuple[Tensor, Tensor]:
        """The guided velocity and the running average of the difference (APG's momentum)."""
        if self.guidance == "cfg":
            return v_uncond + scale * (v_cond - v_uncond), running
        momentum, threshold, eta = self.apg
        diff = v_cond - v_uncond
        running = diff if running is None else diff + momentum * running
        diff = running
        dims = (-1, -2, -3)
        if threshold > 0:
            norm = diff.norm(p=2, dim=dims, keepdim=True)
            diff = diff * torch.minimum(torch.ones_like(diff), threshold / norm)
        unit = F.normalize(v_cond.double(), dim=dims)
        parallel = (diff.double() * unit).sum(dim=dims, keepdim=True) * unit
        orthogonal = (diff.double() - parallel).to(diff.dtype)
        return v_cond + (scale - 1) * (orthogonal + eta * parallel.to(diff.dtype)), running

    def sample_latents(self, cond: Tensor, noise: Tensor, steps: int, scale: float) -> Tensor:
        """Euler steps of the flow from ``noise`` at t = 1 to t = 0 (FlexTok's schedule and guidance)."""
        x, running = noise, None
        uncond = self.unconditional(cond) if scale != 1.0 else None
        for i in range(steps, 0, -1):
            t = torch.full((x.shape[0],), i / steps, device=x.device)
            v = self.velocity(x, t, cond)
            if uncond is not None:
                v, running = self.guided(v, self.velocity(x, t, uncond), scale, running)
            x = x - (1.0 / steps) * v
        return x

    def decode_latents(self, latents: Tensor) -> Tensor:
        """Scaled VAE latents (B, C, h, w) -> images (B, 3, h*f, w*f) through the VAE's decoder."""
        h = self.post_quant_conv(latents / self.scaling_factor)
        return self.vae(rearrange(h, "b c h w -> b (h w) c"), Layout("grid", tuple(h.shape[-2:])))

    @torch.no_grad()
    def target_latents(self, x: Tensor) -> Tensor:
        """The flow's targets: the scaled VAE latents (B, C, H/f, W/f) of images ``x`` (B, 3, H, W), no gradient."""
        return vae_latents(self.vae_encoder, x, self.latent_channels, self.scaling_factor)

    def dropped_velocity(self, x_t: Tensor, t: Tensor, cond: Tensor, drop: Tensor) -> Tensor:
        """The velocity with the rows where ``drop`` (B,) is True under the unconditional input instead of ``cond``.

        The null condition joins the graph even when no row drops (with zero weight), so DDP finds every parameter
        used without ``find_unused_parameters``. A ``learned_token`` null condition is one token long: the dropped
        rows run again as a batch of their own and replace theirs."""
        uncond = self.unconditional(cond)
        if uncond.shape == cond.shape:
            return self.velocity(x_t, t, torch.where(drop[:, None, None], uncond, cond))
        v = self.velocity(x_t, t, cond)
        rows = drop.nonzero()[:, 0]
        if rows.numel() == 0:
            return v + 0 * uncond.sum()
        return v.index_put((rows,), self.velocity(x_t[rows], t[rows], uncond[rows]))

    def loss(self, z_q: Tensor, layout: Layout, x: Tensor, keep: Tensor | None = None,
             generator: torch.Generator | None = None) -> GenerativeLoss:
        """The rectified-flow loss ``mean |v_hat - (e - x0)|^2`` on the images' VAE latents x0 (see the module
        docstring); in training mode each sample's condition is dropped with probability ``condition_dropout``.
        ``generator`` (CPU) makes t, the noise and the dropout reproducible (validation)."""
        latents = self.target_latents(x)
        draws = FlowDraws.draw(latents, self.time_sampling, self.condition_dropout if self.training else 0.0,
                               generator)
        x_t = draws.noisy(latents)
        drop = draws.drop if draws.drop is not None else torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        v_hat = self.dropped_velocity(x_t, draws.t, self.condition(z_q, layout, keep), drop)
        loss = draws.velocity_loss(v_hat, latents)
        return GenerativeLoss(loss, self.decode_latents(draws.one_step(x_t, v_hat)), {"flow_mse": loss.detach()})

    def forward(
        self,
        z_q: Tensor,
        layout: Layout,
        keep: Tensor | None = None,
        size: Sequence[int] | None = None,
        lengths: Tensor | None = None,
        timesteps: int | None = None,
        guidance_scale: float | None = None,
        seed: int | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """Sample images (B, 3, H, W) for the tokens; ``noise`` (B, C, H/f, W/f) is the flow's start when given."""
        steps = self.timesteps if timesteps is None else check_timesteps(timesteps)
        scale = self.guidance_scale if guidance_scale is None else float(guidance_scale)
        height, width = size if size is not None else self.image_size
        f = self.downsample_factor * self.patch_size
        if height % f or width % f:
            raise ValueError(f"flextok decodes sizes that are multiples of {f}, got {height}x{width}")
        cond = self.condition(z_q, layout, keep)
        shape = (z_q.shape[0], self.latent_channels, height // self.downsample_factor, width // self.downsample_factor)
        noise = start_noise(shape, self.seed if seed is None else seed, noise)
        latents = self.sample_latents(cond, noise.to(z_q.device, cond.dtype), steps, scale)
        return self.decode_latents(latents)
