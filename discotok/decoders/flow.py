"""``flow``: a rectified-flow decoder (FlexTok-style) — a transformer velocity predictor over image
patches in pixel space, conditioned in context on the quantized tokens.

Convention (rectified flow, t = 0 data, t = 1 noise): ``x_t = (1 - t) x + t e`` with
``e ~ N(0, I)``, so the velocity is ``v = dx_t/dt = e - x``. Training minimises
``|v_hat - v|^2`` at t drawn from a logit-normal (SD3) or uniform law. Sampling integrates
``dx/dt = v`` with Euler steps from t = 1 (noise) to t = 0 on a uniform grid of
``timesteps`` steps.

The network is the ``titok`` decoder's: the tokens (positions at or past ``keep`` and any
missing prefix become the learned mask token) join the patch tokens of ``x_t`` in one ViT; a
linear patch head predicts, per patch, either the velocity (``prediction: velocity``) or the
clean image (``prediction: data``, JiT-style x-prediction with the velocity loss, for large
pixel patches; then ``v_hat = (x_t - x_hat) / t``). Time enters as a sinusoidal embedding of t
through an MLP, added to every noisy patch token.

Classifier-free guidance: in training each sample loses its whole token condition (every
position becomes the mask token) with probability ``condition_dropout``; sampling uses
``v = v_uncond + s (v_cond - v_uncond)``, and ``s = 1`` is exactly the conditional prediction
(one forward pass). The initial noise comes from a local ``torch.Generator`` seeded by
``seed`` (on CPU, so the same seed gives the same decode on any device).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from discotok.decoders.base import GenerativeDecoder, GenerativeLoss
from discotok.decoders.titok import TiTokDecoder
from discotok.nn.vit import PatchEmbed, grid_size, init_vit_weights
from discotok.registry import DECODERS
from discotok.layout import Layout

PREDICTIONS = ("velocity", "data")
TIME_SAMPLING = ("logit_normal", "uniform")
MIN_DATA_T = 0.05  # x-prediction: t is clamped here when turned into a velocity


class TimeEmbedding(nn.Module):
    """t in [0, 1] -> (B, width): sinusoidal features ``[cos, sin]`` of ``scale * t * max_period^(-i / half)``
    through a two-layer MLP (DiT's; FlexTok's ``TimestepEmbedder`` with ``max_period`` 256 and ``scale``
    1000 / its ``max_timestep``)."""

    def __init__(self, width: int, frequencies: int = 256, max_period: float = 10_000.0, scale: float = 1000.0) -> None:
        super().__init__()
        self.frequencies = frequencies
        self.max_period = float(max_period)
        self.scale = float(scale)
        self.mlp = nn.Sequential(nn.Linear(frequencies, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: Tensor) -> Tensor:
        half = self.frequencies // 2
        freqs = torch.exp(-math.log(self.max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        angles = self.scale * t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=-1).to(self.mlp[0].weight.dtype))


@DECODERS.register("flow")
class FlowDecoder(TiTokDecoder, GenerativeDecoder):
    """Rectified-flow decoder of 1-D token sequences (any prefix 1..N) to images (B, C, H, W).

    Args (beyond ``titok``'s): ``prediction`` (``velocity`` | ``data``), ``time_sampling``
    (``logit_normal`` | ``uniform``), ``condition_dropout`` (probability of dropping a sample's
    tokens in training, for classifier-free guidance), and the sampler's defaults:
    ``timesteps`` (Euler steps), ``guidance_scale`` and ``seed``.
    """

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
        prediction: str = "velocity",
        time_sampling: str = "logit_normal",
        condition_dropout: float = 0.1,
        timesteps: int = 25,
        guidance_scale: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            latent_dim, num_tokens=num_tokens, image_size=image_size, patch_size=patch_size, width=width,
            depth=depth, heads=heads, mlp_ratio=mlp_ratio, out_channels=out_channels,
        )
        if prediction not in PREDICTIONS:
            raise ValueError(f"flow prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if time_sampling not in TIME_SAMPLING:
            raise ValueError(f"flow time_sampling must be one of {TIME_SAMPLING}, got {time_sampling!r}")
        if not 0.0 <= condition_dropout < 1.0:
            raise ValueError(f"condition_dropout must lie in [0, 1), got {condition_dropout}")
        self.prediction = prediction
        self.time_sampling = time_sampling
        self.condition_dropout = condition_dropout
        self.timesteps = check_timesteps(timesteps)
        self.guidance_scale = float(guidance_scale)
        self.seed = int(seed)
        self.noisy_embed = PatchEmbed(out_channels, width, patch_size)
        self.time_embed = TimeEmbedding(width)
        self.noisy_embed.apply(init_vit_weights)
        self.time_embed.apply(init_vit_weights)

    def condition(self, z_q: Tensor, layout: Layout, keep: Tensor | None = None, drop: Tensor | None = None) -> Tensor:
        """Token condition (B, N, width): the ``titok`` latents; rows where ``drop`` is True are all mask tokens."""
        k = z_q.shape[1]
        if layout.kind != "sequence" or not 1 <= k <= min(layout.num_tokens, self.num_tokens):
            raise ValueError(
                f"flow decoder needs a sequence layout and 1..{self.num_tokens} tokens, got {k} tokens on {layout}"
            )
        h = self.latents(z_q, keep)
        if drop is None:
            return h
        null = (self.mask_token + self.latent_pos_embed).to(h.dtype)
        return torch.where(drop.to(h.device)[:, None, None], null, h)

    def null_condition(self, batch_size: int, dtype: torch.dtype) -> Tensor:
        """The unconditional input (B, N, width): every position the mask token."""
        return (self.mask_token + self.latent_pos_embed).to(dtype).expand(batch_size, -1, -1)

    def predict(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """The network's raw output (velocity or clean image, per ``prediction``) for ``x_t`` at times ``t`` (B,)."""
        patches, grid = self.noisy_embed(x_t)
        time = self.time_embed(t)[:, None, :]
        patches = patches + self.pos_embed(grid).to(patches.dtype) + self.patch_token.to(patches.dtype) + time.to(patches.dtype)
        h = self.transformer(torch.cat([patches, cond.to(patches.dtype)], dim=1))
        return self.head(h[:, : patches.shape[1]], grid)

    def velocity(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """The predicted velocity ``e - x`` at ``x_t``, times ``t`` (B,), under token condition ``cond``."""
        out = self.predict(x_t, t, cond)
        if self.prediction == "velocity":
            return out
        return (x_t - out) / t.clamp_min(MIN_DATA_T).view(-1, 1, 1, 1).to(out.dtype)

    def guided_velocity(self, x_t: Tensor, t: Tensor, cond: Tensor, guidance_scale: float) -> Tensor:
        """Classifier-free guidance ``v_u + s (v_c - v_u)``; ``s = 1`` is exactly ``velocity(x_t, t, cond)``."""
        if guidance_scale == 1.0:
            return self.velocity(x_t, t, cond)
        both = self.velocity(
            torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, self.null_condition(x_t.shape[0], cond.dtype)])
        )
        v_cond, v_uncond = both.chunk(2)
        return v_uncond + guidance_scale * (v_cond - v_uncond)

    def loss(
        self, z_q: Tensor, layout: Layout, x: Tensor, keep: Tensor | None = None, generator: torch.Generator | None = None
    ) -> GenerativeLoss:
        """The rectified-flow loss ``mean |v_hat - (e - x)|^2`` of reconstructing ``x`` from the tokens.

        In training mode each sample's tokens are dropped with probability ``condition_dropout``.
        ``generator`` (CPU) makes t, noise and the dropout reproducible (validation); None draws
        from torch's global generator. ``x_hat`` is the one-step estimate ``x_t - t v_hat``.
        """
        draws = FlowDraws.draw(x, self.time_sampling, self.condition_dropout if self.training else 0.0, generator)
        x_t = draws.noisy(x)
        v_hat = self.velocity(x_t, draws.t, self.condition(z_q, layout, keep, draws.drop))
        loss = draws.velocity_loss(v_hat, x)
        return GenerativeLoss(loss, draws.one_step(x_t, v_hat), {"flow_mse": loss.detach()})

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
        """Sample images (B, C, H, W) for the tokens with ``timesteps`` Euler steps from t = 1 to 0.

        Unset sampler arguments take the decoder's defaults. The same ``seed`` gives the same
        images for the same tokens and batch; another seed gives other noise; ``noise`` (B, C, H, W)
        is the starting noise itself.
        """
        steps = self.timesteps if timesteps is None else check_timesteps(timesteps)
        scale = self.guidance_scale if guidance_scale is None else float(guidance_scale)
        height, width = size if size is not None else self.image_size
        grid = grid_size((height, width), self.patch_size)
        b = z_q.shape[0]
        cond = self.condition(z_q, layout, keep)
        shape = (b, self.out_channels, grid[0] * self.patch_size, grid[1] * self.patch_size)
        x = start_noise(shape, self.seed if seed is None else seed, noise).to(z_q.device, cond.dtype)
        times = torch.linspace(1.0, 0.0, steps + 1)
        for i in range(steps):
            t = torch.full((b,), float(times[i]), device=z_q.device)
            x = x + float(times[i + 1] - times[i]) * self.guided_velocity(x, t, cond, scale)
        return x


def sample_times(time_sampling: str, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
    """Training times (B,) in (0, 1) on the CPU: logit-normal (mean 0, std 1; FlexTok's ``MinRFNoiseModule``
    with ``ln``) or uniform."""
    if time_sampling not in TIME_SAMPLING:
        raise ValueError(f"time_sampling must be one of {TIME_SAMPLING}, got {time_sampling!r}")
    if time_sampling == "uniform":
        return torch.rand(batch_size, generator=generator)
    return torch.sigmoid(torch.randn(batch_size, generator=generator))


@dataclass
class FlowDraws:
    """One training batch's random draws of the rectified flow (t = 0 data, t = 1 noise).

    t:     (B,) times; noise: like the target; drop: (B,) bool, samples whose condition is replaced by the
    unconditional one (classifier-free guidance), or None.
    """

    t: Tensor
    noise: Tensor
    drop: Tensor | None

    @classmethod
    def draw(cls, x: Tensor, time_sampling: str, condition_dropout: float,
             generator: torch.Generator | None = None) -> FlowDraws:
        """t, the noise and the condition dropout for targets ``x`` (B, ...), in that order from ``generator`` (CPU;
        None: torch's global generator)."""
        b = x.shape[0]
        t = sample_times(time_sampling, b, generator).to(x.device)
        noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype) if generator else torch.randn_like(x)
        drop = None
        if condition_dropout > 0:
            drop = torch.rand(b, generator=generator).to(x.device) < condition_dropout
        return cls(t, noise, drop)

    def times(self, x: Tensor) -> Tensor:
        """t broadcast over a batch like ``x``."""
        return self.t.view(-1, *[1] * (x.ndim - 1)).to(x.dtype)

    def noisy(self, x: Tensor) -> Tensor:
        """``x_t = (1 - t) x + t e``."""
        t = self.times(x)
        return (1 - t) * x + t * self.noise

    def velocity_loss(self, v_hat: Tensor, x: Tensor) -> Tensor:
        """``mean |v_hat - (e - x)|^2`` in float32."""
        return F.mse_loss(v_hat.float(), (self.noise - x).float())

    def one_step(self, x_t: Tensor, v_hat: Tensor) -> Tensor:
        """The one-step estimate of the data, ``x_t - t v_hat`` (an Euler step from t to 0)."""
        return x_t - self.times(x_t) * v_hat


def check_timesteps(timesteps: int) -> int:
    """``timesteps`` as a positive int, or ``ValueError``."""
    if isinstance(timesteps, bool) or int(timesteps) != timesteps or timesteps < 1:
        raise ValueError(f"timesteps must be a positive integer, got {timesteps!r}")
    return int(timesteps)


def start_noise(shape: Sequence[int], seed: int, noise: Tensor | None = None) -> Tensor:
    """A sampler's starting noise: ``noise`` if given (checked to have ``shape``), else a normal draw from a CPU
    generator seeded by ``seed``."""
    if noise is None:
        return torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(seed)))
    if tuple(noise.shape) != tuple(shape):
        raise ValueError(f"noise must have shape {tuple(shape)}, got {tuple(noise.shape)}")
    return noise
