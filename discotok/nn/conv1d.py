"""1-D convolution blocks of SEANet-style (EnCodec / DAC) waveform encoders and decoders.

Every convolution pads itself (``causal``: all on the left; otherwise split) so a stride-s
layer maps T samples to T/s frames when s divides T. Each takes an optional ``mask`` (B, 1, T)
and zeroes its input past each item's valid length first: a padded batch then computes, over
each item's valid region, exactly what the item alone computes.

``pad_mode="reflect"`` pads as EnCodec's ``SConv1d`` does an item of length L alone: the left
(and fixed right) padding reflects the item, and an item whose length the stride does not divide
is extended on the right by reflection to whole strides (``ceil(L / s)`` frames). In a padded
batch each item is reflected about its own end (its length read from ``mask``).
``pad_mode="replicate"`` (Mimi's frame-rate convolution) repeats the first sample on the left and each
item's last valid sample past its length.

``norm="time_group"`` (EnCodec 48 kHz) follows a convolution with ``TimeGroupNorm`` (``GroupNorm(1, C)``)
over each item's own output length (a transposed convolution's before its trim, as EnCodec's); it looks
at the whole item, so it is never causal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from discotok.nn.time_group_norm import CONV_NORMS, TimeGroupNorm

ACTIVATIONS = ("elu", "snake", "gelu", "silu")
PAD_MODES = ("zeros", "reflect", "replicate")


def length_mask(lengths: Tensor | None, size: int) -> Tensor | None:
    """(B,) valid lengths -> float mask (B, 1, size), 1 inside; None passes through."""
    if lengths is None:
        return None
    return (torch.arange(size, device=lengths.device) < lengths[:, None]).unsqueeze(1).float()


def apply_mask(x: Tensor, mask: Tensor | None) -> Tensor:
    """Zero ``x`` (B, C, T) where ``mask`` (B, 1, T) is 0."""
    return x if mask is None else x * mask.to(x.dtype)


class Snake(nn.Module):
    """Snake activation (DAC / BigVGAN): ``x + sin²(αx) / α`` with a learned α per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + (self.alpha * x).sin().pow(2) / (self.alpha + 1e-9)


def activation(name: str, channels: int) -> nn.Module:
    """A pointwise activation by name: ``elu`` (EnCodec), ``snake`` (DAC), ``gelu``, ``silu``."""
    if name == "snake":
        return Snake(channels)
    layers = {"elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}
    if name not in layers:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")
    return layers[name]()


def replicate_past(x: Tensor, lengths: Tensor | None) -> Tensor:
    """``x`` (B, C, T) with every position at or past an item's length holding its last valid sample."""
    if lengths is None:
        return x
    index = torch.minimum(torch.arange(x.shape[-1], device=x.device)[None], (lengths.long() - 1).clamp(min=0)[:, None])
    return x.gather(-1, index[:, None, :].expand(-1, x.shape[1], -1))


def reflect_pad(
    x: Tensor, pad: tuple[int, int], stride: int, lengths: Tensor | None, stop: int | None = None
) -> Tensor:
    """``x`` (B, C, T) padded by ``pad`` as EnCodec's ``pad1d(..., "reflect")`` pads each item of ``lengths`` alone
    (all T when None), with the extra right reflection to whole strides; positions an item does not reach are 0.
    The result covers positions ``-pad[0]`` to ``stop`` (default ``T + pad[1]``).

    EnCodec extends an item shorter than the padding with zeros before reflecting and drops them after;
    the index arithmetic below follows that exactly.
    """
    b, _, t = x.shape
    left, right = pad
    end = t + right if stop is None else stop
    length = t if lengths is None else int(lengths[0])
    extra_one = -length % stride
    if (lengths is None or bool((lengths == length).all())) and length > max(left, right + extra_one):
        # one length for all items, long enough to reflect without zero extension: torch's own reflect padding
        y = F.pad(x[..., :length], (left, right + extra_one), mode="reflect")
        size = left + end
        return y[..., :size] if y.shape[-1] >= size else F.pad(y, (0, size - y.shape[-1]))
    lengths = torch.full((b,), t, device=x.device) if lengths is None else lengths.to(x.device).long()
    frames = -(-lengths // stride)
    extra = frames * stride - lengths
    zeros = (torch.maximum(torch.full_like(lengths, left), right + extra) - lengths + 1).clamp(min=0)
    extended = (lengths + zeros)[:, None]  # M: the item with its zero extension
    pos = torch.arange(-left, end, device=x.device)[None]
    src = torch.where(pos < 0, -pos, torch.where(pos < extended, pos, 2 * extended - 2 - pos))
    keep = (src >= 0) & (src < lengths[:, None])
    gathered = x.gather(-1, src.clamp(0, t - 1)[:, None, :].expand(-1, x.shape[1], -1))
    return gathered * keep[:, None, :].to(x.dtype)


def conv_norm(norm: str, channels: int, causal: bool) -> TimeGroupNorm | None:
    """The normalisation after a convolution: None (``"none"``) or ``TimeGroupNorm`` (``"time_group"``)."""
    if norm not in CONV_NORMS:
        raise ValueError(f"norm must be one of {CONV_NORMS}, got {norm!r}")
    if norm == "none":
        return None
    if causal:
        raise ValueError("a time group norm looks at the whole item: it cannot be causal")
    return TimeGroupNorm(channels)


def mask_lengths(mask: Tensor | None) -> Tensor | None:
    """Valid lengths (B,) of a mask (B, 1, T); None passes through."""
    return None if mask is None else mask[:, 0].sum(-1).long()


class Conv1d(nn.Module):
    """Weight-normalised Conv1d with its own padding (zeros, reflect or replicate, see the module docstring):
    causal (left) or centred; ``groups`` as ``nn.Conv1d``'s (``groups=in_channels``: depthwise); ``bias=False``
    leaves the bias out; ``norm="time_group"``: a ``TimeGroupNorm`` after it."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        causal: bool = False,
        pad_mode: str = "zeros",
        groups: int = 1,
        bias: bool = True,
        norm: str = "none",
    ) -> None:
        super().__init__()
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        self.conv = weight_norm(
            nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation, groups=groups, bias=bias)
        )
        total = (kernel_size - 1) * dilation + 1 - stride
        self.pad = (total, 0) if causal else (total - total // 2, total // 2)
        self.stride = stride
        self.pad_mode = pad_mode
        self.norm = conv_norm(norm, out_channels, causal)

    def convolve(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """The padded convolution alone (no norm)."""
        if self.pad_mode == "reflect":
            return self.conv(reflect_pad(x, self.pad, self.stride, mask_lengths(mask)))
        if self.pad_mode == "replicate":
            return self.conv(F.pad(replicate_past(x, mask_lengths(mask)), self.pad, mode="replicate"))
        return self.conv(F.pad(apply_mask(x, mask), self.pad))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, C, T) -> (B, C', T / stride); ``mask`` (B, 1, T) zeroes the input's padding (and limits the norm's
        statistics to each item's ``ceil(length / stride)`` outputs)."""
        y = self.convolve(x, mask)
        if self.norm is None:
            return y
        lengths = mask_lengths(mask)
        return self.norm(y, None if lengths is None else -(-lengths // self.stride))


class SeparableConv1d(nn.Module):
    """A depthwise convolution (per channel, ``kernel_size``) then a pointwise (1x1) one to ``out_channels`` (SNAC's
    decoder stem); ``mask`` as ``Conv1d``'s."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, causal: bool = False,
                 pad_mode: str = "zeros") -> None:
        super().__init__()
        self.depthwise = Conv1d(in_channels, in_channels, kernel_size, causal=causal, pad_mode=pad_mode,
                                groups=in_channels)
        self.pointwise = Conv1d(in_channels, out_channels, 1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.pointwise(self.depthwise(x, mask))


class ConvTranspose1d(nn.Module):
    """Weight-normalised ConvTranspose1d trimmed to ``stride * T`` outputs.

    Causal: the surplus is cut on the right, so output sample t depends on frames <= t / stride.
    ``crop=c`` instead cuts c samples from each side (PyTorch's ``padding``; DAC's ``ceil(stride / 2)``,
    one sample short of ``stride * T`` for an odd stride). ``groups`` (``in_channels``: depthwise, as Mimi's
    frame-rate upsampling) and ``bias`` as ``nn.ConvTranspose1d``'s. ``norm="time_group"``: a ``TimeGroupNorm``
    before the trim (EnCodec's ``NormConvTranspose1d``), over each item's ``(frames - 1) * stride + kernel_size``
    untrimmed outputs.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, causal: bool = False,
        crop: int | None = None, groups: int = 1, bias: bool = True, norm: str = "none",
    ) -> None:
        super().__init__()
        conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride, groups=groups, bias=bias)
        self.conv = weight_norm(conv)
        total = kernel_size - stride
        self.trim = (crop, crop) if crop is not None else (0, total) if causal else (total - total // 2, total // 2)
        self.norm = conv_norm(norm, out_channels, causal)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, C, N) -> (B, C', N * stride); ``mask`` (B, 1, N) zeroes padded frames first."""
        y = self.conv(apply_mask(x, mask))
        if self.norm is not None:
            frames = mask_lengths(mask)
            stride, kernel = self.conv.stride[0], self.conv.kernel_size[0]
            y = self.norm(y, None if frames is None else (frames - 1) * stride + kernel)
        return y[..., self.trim[0] : y.shape[-1] - self.trim[1]]


class ResidualUnit(nn.Module):
    """SEANet residual unit: act -> dilated conv (to dim / compress) -> act -> 1x1 conv, plus identity (or, with
    ``shortcut``, a 1x1 convolution of the input: EnCodec's ``true_skip=False``). ``depthwise``: the dilated
    convolution works per channel (SNAC; needs ``compress=1``); ``bias=False``: both convolutions without bias
    (X-Codec's semantic encoder). ``norm``: every convolution's (``Conv1d``)."""

    def __init__(
        self, dim: int, kernel_size: int = 3, dilation: int = 1, compress: int = 2, act: str = "elu", causal: bool = False,
        pad_mode: str = "zeros", shortcut: bool = False, depthwise: bool = False, *, bias: bool = True,
        norm: str = "none",
    ) -> None:
        super().__init__()
        hidden = max(1, dim // compress)
        if depthwise and hidden != dim:
            raise ValueError(f"a depthwise residual unit keeps its width: compress must be 1, got {compress}")
        self.act1 = activation(act, dim)
        self.conv1 = Conv1d(dim, hidden, kernel_size, dilation=dilation, causal=causal, pad_mode=pad_mode,
                            groups=dim if depthwise else 1, bias=bias, norm=norm)
        self.act2 = activation(act, hidden)
        self.conv2 = Conv1d(hidden, dim, 1, bias=bias, norm=norm)
        self.shortcut = Conv1d(dim, dim, 1, norm=norm) if shortcut else None

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        skip = x if self.shortcut is None else self.shortcut(x, mask)
        return skip + self.conv2(self.act2(self.conv1(self.act1(x), mask)), mask)
