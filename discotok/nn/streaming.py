"""Streaming forms of the causal 1-D blocks: the same weights, fed chunk by chunk, giving what the whole
sequence gives offline.

Each streaming block takes ``push(x)`` chunks (B, C, m) and returns the outputs that the inputs seen
so far determine; ``flush()`` ends the stream (the right padding of the offline computation) and
returns the rest. A causal convolution in ``zeros`` mode starts at once; in ``reflect`` mode
(EnCodec) it waits for ``pad + 1`` inputs, whose reflection is its left padding, so the first
outputs come a little late, and its ``flush`` reflects the stream's end to whole strides, as the
offline layer does; in ``replicate`` mode (Mimi's frame-rate convolution) it repeats the first input on
the left and its ``flush`` repeats the last one to whole strides. Chunks may be of any size, one sample
included. A stream uses the weights the model has when the stream is made.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from discotok.nn.conv1d import Conv1d, ConvTranspose1d, ResidualUnit, reflect_pad


def empty_like_time(x: Tensor, channels: int | None = None) -> Tensor:
    """A (B, C, 0) tensor of ``x``'s batch, dtype and device."""
    return x.new_zeros(x.shape[0], x.shape[1] if channels is None else channels, 0)


def pointwise_conv(conv: Conv1d, x: Tensor) -> Tensor:
    """A 1x1 ``Conv1d`` of ``x`` (B, C, m), also when m is 0 (which ``nn.Conv1d`` refuses)."""
    if x.shape[-1] == 0:
        return empty_like_time(x, conv.conv.out_channels)
    return conv(x)


class StreamingConv:
    """A causal ``Conv1d`` fed in chunks (see the module docstring)."""

    def __init__(self, conv: Conv1d) -> None:
        if conv.pad[1]:
            raise ValueError("only causal convolutions stream")
        self.conv = conv
        self.weight = conv.conv.weight.detach()  # the weight-normed weight, computed once for the whole stream
        self.left = conv.pad[0]
        self.stride = conv.stride
        self.kernel = (conv.conv.kernel_size[0] - 1) * conv.conv.dilation[0] + 1
        self.buffer: Tensor | None = None
        self.seen = 0
        self.started = False

    def _run(self) -> Tensor:
        buffer = self.buffer
        n = (buffer.shape[-1] - self.kernel) // self.stride + 1 if buffer.shape[-1] >= self.kernel else 0
        conv = self.conv.conv
        if n == 0:
            return empty_like_time(buffer, conv.out_channels)
        y = F.conv1d(buffer[..., : (n - 1) * self.stride + self.kernel], self.weight, conv.bias, self.stride, 0,
                     conv.dilation)
        self.buffer = buffer[..., n * self.stride :]
        return y

    def push(self, x: Tensor) -> Tensor:
        self.buffer = x if self.buffer is None else torch.cat([self.buffer, x], dim=-1)
        self.seen += x.shape[-1]
        if not self.started:
            waits = {"reflect": self.left + 1, "replicate": 1}.get(self.conv.pad_mode, 0)  # inputs its padding needs
            if self.buffer.shape[-1] < waits:
                return empty_like_time(x, self.conv.conv.out_channels)
            if self.conv.pad_mode == "reflect":
                self.buffer = reflect_pad(self.buffer, (self.left, 0), 1, None)
            elif self.conv.pad_mode == "replicate":
                self.buffer = F.pad(self.buffer, (self.left, 0), mode="replicate")
            else:
                self.buffer = F.pad(self.buffer, (self.left, 0))
            self.started = True
        return self._run()

    def flush(self) -> Tensor:
        """The outputs of the stream's last inputs: reflect mode extends them by reflection to whole strides."""
        if self.buffer is None:
            raise ValueError("flush before any input")
        extra = -self.seen % self.stride
        if not self.started and self.conv.pad_mode == "replicate":  # nothing came
            return empty_like_time(self.buffer, self.conv.conv.out_channels)
        if not self.started:  # a stream no longer than the padding: the offline layer's zero-extended reflection
            self.buffer = reflect_pad(self.buffer, (self.left, 0), self.stride, None, stop=self.seen + extra)
            self.started = True
        elif extra and self.conv.pad_mode == "reflect":  # the stream's end reflected (its edge sample excluded)
            self.buffer = torch.cat([self.buffer, self.buffer[..., -extra - 1 : -1].flip(-1)], dim=-1)
        elif extra and self.conv.pad_mode == "replicate":
            self.buffer = F.pad(self.buffer, (0, extra), mode="replicate")
        elif extra:
            self.buffer = F.pad(self.buffer, (0, extra))
        return self._run()


class StreamingConvTranspose:
    """A causal ``ConvTranspose1d`` fed in chunks: each frame's second half waits for the next frame."""

    def __init__(self, conv: ConvTranspose1d) -> None:
        if conv.trim[0]:
            raise ValueError("only causal transposed convolutions stream")
        self.conv = conv.conv
        self.weight = self.conv.weight.detach()  # computed once for the whole stream
        self.stride = self.conv.stride[0]
        self.pending: Tensor | None = None

    def push(self, x: Tensor) -> Tensor:
        if x.shape[-1] == 0:
            return empty_like_time(x, self.conv.out_channels)
        y = F.conv_transpose1d(x, self.weight, None, self.stride, groups=self.conv.groups)
        if self.pending is not None:
            overlap = self.pending.shape[-1]
            y = torch.cat([y[..., :overlap] + self.pending, y[..., overlap:]], dim=-1)
        emitted = x.shape[-1] * self.stride
        self.pending = y[..., emitted:]
        y = y[..., :emitted]
        return y if self.conv.bias is None else y + self.conv.bias[None, :, None]

    def flush(self) -> Tensor:
        """Nothing: the causal layer trims what the last frame adds past its own samples."""
        return self.pending[..., :0]


class Aligned:
    """Adds a main path to a skip path that may lag it: the sum of what both have given so far."""

    def __init__(self) -> None:
        self.skip: Tensor | None = None
        self.main: Tensor | None = None

    def add(self, skip: Tensor, main: Tensor) -> Tensor:
        self.skip = skip if self.skip is None else torch.cat([self.skip, skip], dim=-1)
        self.main = main if self.main is None else torch.cat([self.main, main], dim=-1)
        n = min(self.skip.shape[-1], self.main.shape[-1])
        out = self.skip[..., :n] + self.main[..., :n]
        self.skip, self.main = self.skip[..., n:], self.main[..., n:]
        return out


class StreamingResidual:
    """A ``ResidualUnit`` fed in chunks."""

    def __init__(self, unit: ResidualUnit) -> None:
        self.unit = unit
        self.conv1 = StreamingConv(unit.conv1)
        self.align = Aligned()

    def _step(self, x: Tensor, y: Tensor) -> Tensor:
        u = self.unit
        skip = x if u.shortcut is None else pointwise_conv(u.shortcut, x)
        return self.align.add(skip, pointwise_conv(u.conv2, u.act2(y)))

    def push(self, x: Tensor) -> Tensor:
        return self._step(x, self.conv1.push(self.unit.act1(x)))

    def flush(self) -> Tensor:
        """The block's outputs still owed to inputs already pushed (the skip path owes none)."""
        return self.align.add(self.align.skip[..., :0], pointwise_conv(self.unit.conv2, self.unit.act2(self.conv1.flush())))


class StreamingLSTM:
    """The ``SequenceModel``'s LSTM with its state carried between chunks (plus its skip connection)."""

    def __init__(self, sequence: nn.Module) -> None:
        if sequence.kind not in ("lstm", "none"):
            raise ValueError(f"a {sequence.kind} sequence model does not stream (lstm and none do)")
        self.sequence = sequence
        self.state: tuple[Tensor, Tensor] | None = None
        self.last: Tensor | None = None

    def push(self, x: Tensor) -> Tensor:
        self.last = x[..., :0]
        if self.sequence.kind == "none" or x.shape[-1] == 0:
            return x
        y, self.state = self.sequence.net(x.transpose(1, 2), self.state)
        return x + y.transpose(1, 2)

    def flush(self) -> Tensor:
        """Nothing: every frame pushed has been given back."""
        return self.last


class Pointwise:
    """A module applied sample by sample (activations): nothing to carry between chunks."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.last: Tensor | None = None

    def push(self, x: Tensor) -> Tensor:
        self.last = x[..., :0]
        return self.module(x)

    def flush(self) -> Tensor:
        return self.module(self.last)


class Chain:
    """Streaming blocks one after another: ``push`` passes a chunk through all; ``flush`` ends each in turn.

    ``pad_to=h``: at the end the input is first zero-padded to a multiple of h samples (a zero-padding
    encoder's whole hops, as the offline tokenizer pads).
    """

    def __init__(self, steps: list, pad_to: int | None = None) -> None:
        self.steps = steps
        self.pad_to = pad_to
        self.seen = 0
        self.last: Tensor | None = None

    def push(self, x: Tensor) -> Tensor:
        self.seen += x.shape[-1]
        self.last = x[..., :0]
        for step in self.steps:
            x = step.push(x)
        return x

    def flush(self) -> Tensor:
        if self.last is None:
            raise ValueError("flush before any input")
        head = None
        if self.pad_to and self.seen % self.pad_to:
            missing = self.last.new_zeros(*self.last.shape[:2], -self.seen % self.pad_to)
            head = self.push(missing)
        x = self.steps[0].flush()
        for step in self.steps[1:]:
            x = torch.cat([step.push(x), step.flush()], dim=-1)
        return x if head is None else torch.cat([head, x], dim=-1)
