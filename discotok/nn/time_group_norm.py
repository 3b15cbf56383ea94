"""EnCodec's ``time_group_norm``: ``GroupNorm(1, C)`` after a convolution (its 48 kHz model), statistics over
every channel and time step of an item; with ``lengths``, over each item's valid steps only, so an item in a
padded batch is normalised as it is alone."""

from __future__ import annotations

import torch
from torch import Tensor, nn

CONV_NORMS = ("none", "time_group")


class TimeGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm(1, channels)`` over (B, C, T), with optional valid ``lengths`` (B,) steps per item."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__(1, channels, eps=eps)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        if lengths is None:
            return super().forward(x)
        mask = (torch.arange(x.shape[-1], device=x.device)[None] < lengths[:, None]).unsqueeze(1).to(x.dtype)
        count = (lengths.clamp(min=1) * x.shape[1]).to(x.dtype)[:, None, None]
        mean = (x * mask).sum((1, 2), keepdim=True) / count
        var = ((x - mean).pow(2) * mask).sum((1, 2), keepdim=True) / count
        y = (x - mean) * torch.rsqrt(var + self.eps)
        return y * self.weight[:, None] + self.bias[:, None]
