"""Sequence models for the bottleneck of waveform encoders and decoders.

``lstm`` is EnCodec's: a unidirectional LSTM with a skip connection. Being unidirectional it
is causal, so padding after an item never changes its valid frames. ``transformer`` is a
pre-norm transformer (timm blocks) over sinusoidal positions; padded frames are hidden
from attention by a key mask, and ``causal`` adds a lower-triangular mask.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from discotok.nn.local_attention import LocalAttention
from discotok.nn.vit import Transformer

SEQUENCE_MODELS = ("none", "lstm", "transformer", "local_attention")


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """(length, dim) sine/cosine positions (Vaswani et al.); any length, no parameters."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=device) / max(half, 1))
    angles = torch.arange(length, device=device)[:, None] * freqs[None]
    pos = torch.cat([angles.sin(), angles.cos()], dim=1)
    return nn.functional.pad(pos, (0, dim - 2 * half))


class SequenceModel(nn.Module):
    """(B, D, N) -> (B, D, N) with a residual connection; ``kind`` in ``none | lstm | transformer | local_attention``
    (``window``: the local attention's frames per window)."""

    def __init__(
        self, dim: int, kind: str = "lstm", layers: int = 2, heads: int = 8, causal: bool = False, window: int = 32
    ) -> None:
        super().__init__()
        if kind not in SEQUENCE_MODELS:
            raise ValueError(f"sequence model must be one of {SEQUENCE_MODELS}, got {kind!r}")
        if kind == "local_attention" and causal:
            raise ValueError("the local_attention sequence model looks ahead within its window: it cannot be causal")
        self.kind = kind
        self.causal = causal
        if kind == "lstm":
            self.net = nn.LSTM(dim, dim, num_layers=layers, batch_first=True)
        elif kind == "transformer":
            self.net = Transformer(dim, layers, heads)
        elif kind == "local_attention":
            self.net = LocalAttention(dim, heads, window)
        self.window = window if kind == "local_attention" else 1

    def attention_mask(self, lengths: Tensor | None, n: int, device: torch.device) -> Tensor | None:
        """Boolean (B or 1, 1, N, N) mask, True where a frame may attend; None when nothing is hidden."""
        mask = torch.ones(n, n, dtype=torch.bool, device=device).tril() if self.causal else None
        if lengths is not None:
            keys = (torch.arange(n, device=device)[None] < lengths[:, None])[:, None, None, :]
            mask = keys if mask is None else keys & mask
        elif mask is not None:
            mask = mask[None, None]
        return mask

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``lengths`` (B,) valid frames per item; frames past them do not reach valid ones."""
        if self.kind == "none":
            return x
        h = rearrange(x, "b d n -> b n d")
        if self.kind == "lstm":
            y = self.net(h)[0]
        elif self.kind == "local_attention":
            y = self.net(h, lengths)
        else:
            pos = sinusoidal_positions(h.shape[1], h.shape[2], h.device).to(h.dtype)
            y = self.net(h + pos, attn_mask=self.attention_mask(lengths, h.shape[1], h.device))
        return x + rearrange(y, "b n d -> b d n")
