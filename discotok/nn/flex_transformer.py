"""FlexTok's transformer pieces: pre-norm blocks with QK-norm, SwiGLU and optional adaLN-zero modulation.

Each block is ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))`` (with adaLN: the normalised inputs are
modulated ``n * (1 + scale) + shift`` and each branch is multiplied by a gate, the six vectors coming from a
``SiLU -> Linear`` of a conditioning vector, here the flow time). Attention has separate ``wq`` / ``wk`` /
``wv`` projections, a LayerNorm over each head's queries and keys (``qk_norm``) and FlexTok's muP scale
``8 / head_dim`` (1/sqrt(head_dim) at head_dim 64). The MLP is a gated one (``fc2(act(fc1(x)) * fc3(x))``,
hidden width ``int(2/3 * mlp_ratio * width)``) or a plain one (``fc2(act(fc1(x)))``). Module names follow
apple/ml-flextok's ``FlexBlock`` / ``FlexBlockAdaLN``, so its tensors load under their own names.

``adaln_parts`` > 1 gives each part of the sequence (FlexTok's decoder: the image patches, then the
registers) its own modulation: the modulation layer outputs ``adaln_parts * 6 * width`` values, part i's
being the i-th chunk.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

ACTIVATIONS = {"silu": nn.SiLU, "gelu": nn.GELU}


def layer_norm(dim: int, affine: bool = False, bias: bool = False, eps: float = 1e-5) -> nn.LayerNorm:
    """FlexTok's ``Fp32LayerNorm``: a LayerNorm (by default without weight and bias) computed in float32."""
    return Fp32LayerNorm(dim, eps=eps, elementwise_affine=affine, bias=bias and affine)


class Fp32LayerNorm(nn.LayerNorm):
    """LayerNorm in float32 whatever the input's dtype, cast back to it."""

    def forward(self, x: Tensor) -> Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).type_as(x)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN's modulation ``x * (1 + scale) + shift``."""
    return x * (1.0 + scale) + shift


class FlexAttention(nn.Module):
    """Multi-head self-attention with separate projections, optional QK-norm and scale ``8 / head_dim``."""

    def __init__(self, dim: int, head_dim: int, qkv_bias: bool = False, proj_bias: bool = False,
                 qk_norm: bool = True, norm: dict | None = None) -> None:
        super().__init__()
        if dim % head_dim:
            raise ValueError(f"width {dim} must be a multiple of head_dim {head_dim}")
        self.heads = dim // head_dim
        self.scale = 8.0 / head_dim
        self.wq = nn.Linear(dim, dim, bias=qkv_bias)
        self.wk = nn.Linear(dim, dim, bias=qkv_bias)
        self.wv = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.q_norm = layer_norm(head_dim, **(norm or {})) if qk_norm else nn.Identity()
        self.k_norm = layer_norm(head_dim, **(norm or {})) if qk_norm else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x`` (B, N, dim); ``mask`` (N, N) boolean, True: may attend."""
        q, k, v = (rearrange(proj(x), "b n (h d) -> b h n d", h=self.heads) for proj in (self.wq, self.wk, self.wv))
        out = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v, attn_mask=mask, scale=self.scale)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class FlexMlp(nn.Module):
    """A gated (``fc2(act(fc1 x) * fc3 x)``, hidden ``int(2 * hidden / 3)``) or plain two-layer MLP."""

    def __init__(self, dim: int, hidden: int, gated: bool = True, activation: str = "silu", bias: bool = False) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.gated = gated
        hidden = int(2 * hidden / 3) if gated else hidden
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = ACTIVATIONS[activation]()
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        if gated:
            self.fc3 = nn.Linear(dim, hidden, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.fc1(x))
        return self.fc2(h * self.fc3(x) if self.gated else h)


class FlexBlock(nn.Module):
    """One pre-norm block; with ``adaln_parts`` (>= 1) an adaLN-zero modulation from a conditioning vector."""

    def __init__(self, dim: int, head_dim: int = 64, mlp_ratio: float = 4.0, gated_mlp: bool = True,
                 activation: str = "silu", qkv_bias: bool = False, proj_bias: bool = False, mlp_bias: bool = False,
                 qk_norm: bool = True, norm: dict | None = None, adaln_parts: int = 0) -> None:
        super().__init__()
        self.norm1 = layer_norm(dim, **(norm or {}))
        self.attn = FlexAttention(dim, head_dim, qkv_bias, proj_bias, qk_norm, norm)
        self.norm2 = layer_norm(dim, **(norm or {}))
        self.mlp = FlexMlp(dim, int(dim * mlp_ratio), gated_mlp, activation, mlp_bias)
        self.adaln_parts = adaln_parts
        if adaln_parts:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, adaln_parts * 6 * dim))
            nn.init.zeros_(self.adaLN_modulation[-1].weight)
            nn.init.zeros_(self.adaLN_modulation[-1].bias)

    def forward(self, x: Tensor, mask: Tensor | None = None, cond: Tensor | None = None,
                parts: Sequence[int] | None = None) -> Tensor:
        """``x`` (B, N, dim); adaLN blocks take ``cond`` (B, dim) and the lengths of the sequence's ``parts``."""
        if not self.adaln_parts:
            x = x + self.attn(self.norm1(x), mask)
            return x + self.mlp(self.norm2(x))
        gate_msa, gate_mlp, shift_msa, scale_msa, shift_mlp, scale_mlp = per_part(
            self.adaLN_modulation(cond), self.adaln_parts, parts or [x.shape[1]]).chunk(6, dim=-1)
        x = x + gate_msa * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), mask)
        return x + gate_mlp * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


def per_part(emb: Tensor, num_parts: int, parts: Sequence[int]) -> Tensor:
    """Per-token modulations (B, sum(parts), D') from ``emb`` (B, num_parts * D'): chunk i for every token of part
    i, or, with one chunk, the same for every token."""
    chunks = emb.chunk(num_parts, dim=-1)
    if num_parts == 1:
        return chunks[0][:, None, :].expand(-1, sum(parts), -1)
    if len(parts) != num_parts:
        raise ValueError(f"{num_parts} adaLN modulations for a sequence of {len(parts)} parts")
    return torch.cat([c[:, None, :].expand(-1, n, -1) for c, n in zip(chunks, parts)], dim=1)


class FlexTransformer(nn.Module):
    """``depth`` ``FlexBlock`` s (no final norm: FlexTok's heads normalise)."""

    def __init__(self, width: int, depth: int, head_dim: int = 64, mlp_ratio: float = 4.0, gated_mlp: bool = True,
                 activation: str = "silu", qkv_bias: bool = False, proj_bias: bool = False, mlp_bias: bool = False,
                 qk_norm: bool = True, norm: dict | None = None, adaln_parts: int = 0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            FlexBlock(width, head_dim, mlp_ratio, gated_mlp, activation, qkv_bias, proj_bias, mlp_bias, qk_norm, norm,
                      adaln_parts) for _ in range(depth))
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear) and "adaLN_modulation" not in name:
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None, cond: Tensor | None = None,
                parts: Sequence[int] | None = None) -> Tensor:
        for block in self.blocks:
            x = block(x, mask, cond, parts)
        return x


def sincos_grid(height: int, width: int, dim: int, temperature: float = 10_000.0) -> Tensor:
    """FlexTok's fixed 2-D sine-cosine positions (1, dim, height, width) (MoCo v3's; ``dim`` a multiple of 4):
    built over a (width, height) meshgrid read back as (height, width), as FlexTok builds them."""
    if dim % 4:
        raise ValueError(f"2-D sine-cosine positions need a width divisible by 4, got {dim}")
    grid_w, grid_h = torch.meshgrid(torch.arange(width, dtype=torch.float32),
                                    torch.arange(height, dtype=torch.float32), indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    out_w, out_h = grid_w.reshape(-1)[:, None] * omega[None], grid_h.reshape(-1)[:, None] * omega[None]
    pos = torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)
    return rearrange(pos, "(h w) d -> 1 d h w", h=height, w=width)


def prefix_causal(num_prefix: int, num_causal: int, device: torch.device | None = None) -> Tensor:
    """Boolean mask over ``[prefix, causal part]``: the prefix attends to itself, token i of the causal part to the
    whole prefix and to causal tokens 0..i (FlexTok's ``causal_last``)."""
    total = num_prefix + num_causal
    mask = torch.ones(total, total, dtype=torch.bool, device=device).tril()
    mask[:, :num_prefix] = True
    return mask


def patchify(x: Tensor, patch: int) -> Tensor:
    """Latents (B, C, H, W) -> patches (B, H/p, W/p, p*p*C), FlexTok's feature order (row, column, channel)."""
    return rearrange(x, "b c (h p) (w q) -> b h w (p q c)", p=patch, q=patch)


def unpatchify(x: Tensor, patch: int) -> Tensor:
    """Patches (B, h, w, p*p*C) -> latents (B, C, h*p, w*p)."""
    return rearrange(x, "b h w (p q c) -> b c (h p) (w q)", p=patch, q=patch)

