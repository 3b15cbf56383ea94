"""A pre-norm transformer block with rotary positions, LayerScale and a GELU MLP (Mimi's / moshi's).

``x + s1 * attn(norm1(x))``, then ``x + s2 * mlp(norm2(x))``: LayerNorms with biases, bias-free
projections (one fused ``qkv``), rotary position embeddings on queries and keys (the "rotate half"
layout of transformers' RoPE: the first half of each head's channels are the real parts), an exact GELU
between the MLP's two linear maps, and a learned per-channel LayerScale (``layer_scale`` its initial
value; None: no scale). Attention takes keys and values of earlier positions (a KV cache) and a
boolean mask (True: may attend), so a causal stack can run offline or chunk by chunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

KV = tuple[Tensor, Tensor]


def rotate(x: Tensor, positions: Tensor, theta: float) -> Tensor:
    """Rotary embedding of ``x`` (B, H, N, d) at integer ``positions`` (N,): pairs (i, i + d/2) rotated by
    ``position * theta ** (-2i / d)``, computed in float32."""
    d = x.shape[-1]
    inv_freq = theta ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angles = positions.to(torch.float32)[:, None] * inv_freq[None]
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    first, second = x[..., : d // 2], x[..., d // 2 :]
    return (x * cos + torch.cat([-second, first], -1) * sin).to(x.dtype)


class LayerScale(nn.Module):
    """A learned per-channel scale of a residual branch (Touvron et al. 2021)."""

    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * x


class RotaryAttention(nn.Module):
    """Multi-head self-attention with rotary positions and bias-free projections."""

    def __init__(self, dim: int, heads: int, theta: float = 10_000.0) -> None:
        super().__init__()
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"dim {dim} must split into {heads} heads of an even size")
        self.heads = heads
        self.theta = theta
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, positions: Tensor, mask: Tensor, past: KV | None = None) -> tuple[Tensor, KV]:
        """``x`` (B, N, dim) at ``positions`` (N,); ``past`` keys and values (B, H, M, d) of earlier positions;
        ``mask`` (N, M + N) boolean. Returns the output and the keys and values of past and present."""
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        q, k = rotate(q, positions, self.theta), rotate(k, positions, self.theta)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(rearrange(out, "b h n d -> b n (h d)")), (k, v)


class TransformerBlock(nn.Module):
    """Pre-norm attention and GELU MLP, each with its LayerScale (see the module docstring)."""

    def __init__(
        self, dim: int, heads: int, mlp_dim: int, layer_scale: float | None = 0.01, theta: float = 10_000.0,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = RotaryAttention(dim, heads, theta)
        self.scale1 = LayerScale(dim, layer_scale) if layer_scale is not None else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.fc1 = nn.Linear(dim, mlp_dim, bias=False)
        self.fc2 = nn.Linear(mlp_dim, dim, bias=False)
        self.scale2 = LayerScale(dim, layer_scale) if layer_scale is not None else nn.Identity()

    def forward(self, x: Tensor, positions: Tensor, mask: Tensor, past: KV | None = None) -> tuple[Tensor, KV]:
        """(B, N, dim) -> (B, N, dim) and this block's keys and values (see ``RotaryAttention``)."""
        h, kv = self.attn(self.norm1(x), positions, mask, past)
        x = x + self.scale1(h)
        return x + self.scale2(self.fc2(F.gelu(self.fc1(self.norm2(x))))), kv
