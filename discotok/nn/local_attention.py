"""Windowed (local) self-attention over frames, SNAC's ``LocalMHA``: each window of ``window`` frames attends
within itself only, with rotary positions counted from the window's start.

Pre-norm (LayerNorm), one bias-free projection to queries, keys and values, ``heads`` heads of
``dim / heads`` features, rotary embeddings (rotate-half form, base 10000) and a bias-free output
projection. ``forward`` returns the update only; the caller adds the residual.

Windows start at frame 0. A length that is not a multiple of ``window`` is zero-padded to one (the
padding is hidden from attention), and with ``lengths`` (B,) valid frames per item the keys past an
item's length are hidden in the window that holds its end: an item whose length is a multiple of
``window`` (what SNAC's own padding gives) sees nothing of what follows it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def rotate_half(x: Tensor) -> Tensor:
    """(..., 2h) -> (..., 2h): the halves (a, b) become (-b, a)."""
    a, b = rearrange(x, "... (r d) -> r ... d", r=2)
    return torch.cat((-b, a), dim=-1)


class LocalAttention(nn.Module):
    """(B, N, dim) -> (B, N, dim), attention within windows of ``window`` frames (see the module docstring)."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        if heads < 1 or dim % heads or (dim // heads) % 2:
            raise ValueError(f"local attention needs dim divisible by heads into even head sizes, got {dim}, {heads}")
        if window < 1:
            raise ValueError(f"attention window must be positive, got {window}")
        self.heads = heads
        self.window = window
        head_dim = dim // heads
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))

    def rotary(self, x: Tensor) -> Tensor:
        """``x`` (..., window, head_dim) with rotary positions 0..window-1 applied."""
        t = torch.arange(x.shape[-2], device=x.device).type_as(self.inv_freq)
        freqs = torch.einsum("i,j->ij", t, self.inv_freq)
        freqs = torch.cat((freqs, freqs), dim=-1)
        return x * freqs.cos() + rotate_half(x) * freqs.sin()

    def key_mask(self, lengths: Tensor | None, n: int, padded: int, device: torch.device) -> Tensor | None:
        """Boolean (B or 1, 1, windows, 1, window), True for the keys a query may see; None when all may."""
        if lengths is None and n == padded:
            return None
        valid = torch.full((1,), n, device=device) if lengths is None else lengths.to(device).long().clamp(max=n)
        if lengths is not None and n == padded and not bool((valid % self.window).any()):
            return None
        pos = torch.arange(padded, device=device)[None]
        start = pos - pos % self.window
        keep = (pos < valid[:, None]) | (start >= valid[:, None])  # windows wholly past the end attend as they like
        return rearrange(keep, "b (w n) -> b 1 w 1 n", n=self.window)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``x`` (B, N, dim), ``lengths`` (B,) valid frames or None -> the attention's update (B, N, dim)."""
        n = x.shape[1]
        padded = -(-n // self.window) * self.window
        h = self.norm(x)
        if padded != n:
            h = F.pad(h, (0, 0, 0, padded - n))
        q, k, v = (rearrange(t, "b (w n) (h d) -> b h w n d", n=self.window, h=self.heads)
                   for t in self.to_qkv(h).chunk(3, dim=-1))
        mask = self.key_mask(lengths, n, padded, x.device)
        out = F.scaled_dot_product_attention(self.rotary(q), self.rotary(k), v, attn_mask=mask)
        return self.to_out(rearrange(out, "b h w n d -> b (w n) (h d)"))[:, :n]
