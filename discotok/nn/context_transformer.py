"""A causal transformer over frames with a sliding context (Mimi's encoder and decoder transformers).

Frame t attends to frames ``t - context + 1 .. t`` (``context`` None: every earlier frame), so frames
after an item's end never reach its valid frames and a zero-padded batch needs no key mask. It works
on conv-layout tensors (B, dim, N), as the convolutions around it, and ``stream()`` runs it chunk by
chunk with a KV cache of the last ``context - 1`` frames, giving what the whole sequence gives offline.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from discotok.nn.transformer_block import KV, TransformerBlock


def context_mask(queries: Tensor, keys: Tensor, context: int | None) -> Tensor:
    """Boolean (N, M) mask of which key positions each query position may attend to (causal, sliding)."""
    delta = queries[:, None] - keys[None, :]
    allowed = delta >= 0
    return allowed if context is None else allowed & (delta < context)


class ContextTransformer(nn.Module):
    """``layers`` ``TransformerBlock``s, causal with a sliding ``context``; (B, dim, N) -> (B, dim, N)."""

    def __init__(
        self, dim: int, layers: int, heads: int, mlp_dim: int, context: int | None = None,
        layer_scale: float | None = 0.01, theta: float = 10_000.0, norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if context is not None and context < 1:
            raise ValueError(f"context must be a positive number of frames or None, got {context}")
        self.context = context
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, mlp_dim, layer_scale, theta, norm_eps) for _ in range(layers)
        )

    def run(self, h: Tensor, start: int, past: list[KV] | None) -> tuple[Tensor, list[KV]]:
        """Frames (B, N, dim) at positions ``start..start+N-1`` after the cached ``past`` -> outputs, new cache."""
        positions = torch.arange(start, start + h.shape[1], device=h.device)
        cached = 0 if past is None else past[0][0].shape[2]
        mask = context_mask(positions, torch.arange(start - cached, start + h.shape[1], device=h.device), self.context)
        kept = []
        for i, block in enumerate(self.blocks):
            h, (k, v) = block(h, positions, mask, None if past is None else past[i])
            drop = 0 if self.context is None else max(0, k.shape[2] - (self.context - 1))
            kept.append((k[:, :, drop:], v[:, :, drop:]))
        return h, kept

    def forward(self, x: Tensor) -> Tensor:
        """(B, dim, N) -> (B, dim, N)."""
        return rearrange(self.run(rearrange(x, "b d n -> b n d"), 0, None)[0], "b n d -> b d n")

    def stream(self) -> "StreamingContextTransformer":
        return StreamingContextTransformer(self)


class StreamingContextTransformer:
    """A ``ContextTransformer`` fed frame chunks (B, dim, n): each frame's output comes with it."""

    def __init__(self, transformer: ContextTransformer) -> None:
        self.transformer = transformer
        self.past: list[KV] | None = None
        self.seen = 0
        self.last: Tensor | None = None

    def push(self, x: Tensor) -> Tensor:
        self.last = x[..., :0]
        if x.shape[-1] == 0:
            return x
        h, self.past = self.transformer.run(rearrange(x, "b d n -> b n d"), self.seen, self.past)
        self.seen += x.shape[-1]
        return rearrange(h, "b n d -> b d n")

    def flush(self) -> Tensor:
        """Nothing: every frame pushed has been given back."""
        return self.last
