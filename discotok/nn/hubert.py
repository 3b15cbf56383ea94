"""HuBERT (Hsu et al. 2021) as a feature extractor: transformers' ``HubertModel`` (the post-norm base layout,
``do_stable_layer_norm=False``, ``feat_extract_norm="group"``) in inference, with the average of its hidden states.

A stack of plain strided convolutions (no padding; a per-channel GroupNorm after the first, GELU after each)
turns the waveform into frames; a LayerNorm and a linear map project them to ``dim``; a grouped, weight-normed
positional convolution (kernel ``position_kernel``, its last output dropped when the kernel is even) is added,
then a LayerNorm, then post-norm transformer layers (``x = norm(x + attn(x))``, ``x = final_norm(x + mlp(x))``).
``forward`` returns the mean of the hidden states transformers reports with ``output_hidden_states`` (the input
of the first layer and every layer's output), which is what X-Codec uses.

With ``lengths`` (B,) samples, each item of a zero-padded batch gets what it gets alone: the GroupNorm's statistics
are taken over the item's own positions, frames past the item are zeroed before the positional convolution and
never attended to.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


def conv_frames(lengths: Tensor | int, kernels: Sequence[int], strides: Sequence[int]) -> Tensor | int:
    """The frames unpadded convolutions of ``kernels`` / ``strides`` make of ``lengths`` samples."""
    for k, s in zip(kernels, strides):
        lengths = (lengths - k) // s + 1
    return lengths


class FeatureConvs(nn.Module):
    """HuBERT's convolutional feature extractor: (B, T) -> (B, channels[-1], frames)."""

    def __init__(self, channels: Sequence[int], kernels: Sequence[int], strides: Sequence[int], bias: bool) -> None:
        super().__init__()
        if not len(channels) == len(kernels) == len(strides):
            raise ValueError(f"one kernel and stride per convolution: {list(channels)}, {list(kernels)}, "
                             f"{list(strides)}")
        widths = [1, *channels]
        self.kernels, self.strides = [int(k) for k in kernels], [int(s) for s in strides]
        self.convs = nn.ModuleList(nn.Conv1d(widths[i], widths[i + 1], k, s, bias=bias)
                                   for i, (k, s) in enumerate(zip(self.kernels, self.strides)))
        self.norm = nn.GroupNorm(channels[0], channels[0])

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        h = self.convs[0](rearrange(x, "b t -> b 1 t"))
        if lengths is None:
            h = self.norm(h)
        else:  # each item normalised over its own positions
            valid = conv_frames(lengths, self.kernels[:1], self.strides[:1]).tolist()
            h = torch.cat([F.pad(self.norm(h[b : b + 1, :, :n]), (0, h.shape[-1] - n)) for b, n in enumerate(valid)])
        h = F.gelu(h)
        for conv in self.convs[1:]:
            h = F.gelu(conv(h))
        return h


class PositionalConv(nn.Module):
    """HuBERT's relative positional embedding: a grouped convolution (weight norm over the kernel axis) and GELU."""

    def __init__(self, dim: int, kernel_size: int, groups: int) -> None:
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=groups), dim=2)
        self.drop_last = kernel_size % 2 == 0

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, dim) -> (B, N, dim)."""
        h = self.conv(rearrange(x, "b n d -> b d n"))
        return rearrange(F.gelu(h[..., :-1] if self.drop_last else h), "b d n -> b n d")


class Attention(nn.Module):
    """Multi-head self-attention with biased query, key, value and output projections."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} does not split into {heads} heads")
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """``x`` (B, N, dim); ``mask`` (B, 1, 1, N) True where a key may be attended to, or None."""
        projections = (self.q_proj, self.k_proj, self.v_proj)
        q, k, v = (rearrange(p(x), "b n (h d) -> b h n d", h=self.heads) for p in projections)
        return self.out_proj(rearrange(F.scaled_dot_product_attention(q, k, v, attn_mask=mask), "b h n d -> b n (h d)"))


class PostNormLayer(nn.Module):
    """HuBERT's (BERT-style) post-norm transformer layer with a GELU MLP."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, eps: float) -> None:
        super().__init__()
        self.attention = Attention(dim, heads)
        self.layer_norm = nn.LayerNorm(dim, eps=eps)
        self.intermediate_dense = nn.Linear(dim, mlp_dim)
        self.output_dense = nn.Linear(mlp_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = self.layer_norm(x + self.attention(x, mask))
        return self.final_layer_norm(x + self.output_dense(F.gelu(self.intermediate_dense(x))))


class Hubert(nn.Module):
    """Waveforms (B, T) -> the mean of HuBERT's hidden states (B, frames, dim) (see the module docstring)."""

    def __init__(
        self,
        dim: int = 768,
        layers: int = 12,
        heads: int = 12,
        mlp_dim: int = 3072,
        conv_channels: Sequence[int] = (512,) * 7,
        conv_kernels: Sequence[int] = (10, 3, 3, 3, 3, 2, 2),
        conv_strides: Sequence[int] = (5, 2, 2, 2, 2, 2, 2),
        conv_bias: bool = False,
        projection_norm: bool = True,
        position_kernel: int = 128,
        position_groups: int = 16,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.features = FeatureConvs(conv_channels, conv_kernels, conv_strides, conv_bias)
        width = int(conv_channels[-1])
        self.projection_norm = nn.LayerNorm(width, eps=norm_eps) if projection_norm else nn.Identity()
        self.projection = nn.Linear(width, dim)
        self.position = PositionalConv(dim, position_kernel, position_groups)
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.layers = nn.ModuleList(PostNormLayer(dim, heads, mlp_dim, norm_eps) for _ in range(layers))

    def num_frames(self, samples: Tensor | int) -> Tensor | int:
        """Frames of ``samples`` input samples."""
        return conv_frames(samples, self.features.kernels, self.features.strides)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``x`` (B, T); ``lengths`` (B,) valid samples per item (None: all T)."""
        h = self.projection(self.projection_norm(rearrange(self.features(x, lengths), "b d n -> b n d")))
        mask = None
        if lengths is not None:
            valid = torch.arange(h.shape[1], device=h.device)[None] < self.num_frames(lengths.to(h.device))[:, None]
            h = h * valid[..., None].to(h.dtype)
            mask = valid[:, None, None, :]
        h = self.norm(h + self.position(h))
        hidden = [h]
        for layer in self.layers:
            hidden.append(layer(hidden[-1], mask))
        return torch.stack(hidden, dim=1).mean(dim=1)
