"""``frame``: the decoder mirroring the ``frame`` encoder, at the frame rate until its last layer.

A convolution from ``latent_dim`` to ``width`` channels, residual units of dilated convolutions, then
one transposed convolution of ``window`` taps and stride ``hop_length`` (overlap-add synthesis): N
frames decode to exactly N * hop_length samples. ``lengths`` (B,) valid frames per item: frames past
them never reach an item's valid samples.
"""

from __future__ import annotations

from collections.abc import Sequence

from einops import rearrange
from torch import Tensor, nn

from discotok.decoders.audio import check_frames
from discotok.decoders.base import WaveformDecoder
from discotok.encoders.frame import check_frame_sizes
from discotok.layout import Layout
from discotok.nn.conv1d import Conv1d, ConvTranspose1d, ResidualUnit, length_mask
from discotok.nn.conv1d import activation as make_activation
from discotok.registry import DECODERS


@DECODERS.register("frame")
class FrameDecoder(WaveformDecoder):
    """Tokens (B, N, latent_dim) -> waveforms (B, out_channels, N * hop_length)."""

    def __init__(
        self,
        latent_dim: int,
        out_channels: int = 1,
        hop_length: int = 80,
        window: int | None = None,
        width: int = 256,
        dilations: Sequence[int] = (1, 3, 9),
        kernel_size: int = 3,
        compress: int = 2,
        activation: str = "elu",
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.hop_length = int(hop_length)
        window = check_frame_sizes(self.hop_length, window, dilations)
        self.stem = Conv1d(latent_dim, width, kernel_size)
        self.units = nn.ModuleList(ResidualUnit(width, kernel_size, int(d), compress, activation) for d in dilations)
        self.act = make_activation(activation, width)
        self.synthesis = ConvTranspose1d(width, out_channels, window, stride=self.hop_length)

    def forward(
        self, z_q: Tensor, layout: Layout, keep: Tensor | None = None, size: Sequence[int] | None = None,
        lengths: Tensor | None = None,
    ) -> Tensor:
        """Frames (B, N, D) on a frames ``layout`` -> (B, C, N * hop_length)."""
        check_frames(z_q, layout, "frame")
        mask = length_mask(None if lengths is None else lengths.to(z_q.device).long(), z_q.shape[1])
        h = self.stem(rearrange(z_q, "b n d -> b d n"), mask)
        for unit in self.units:
            h = unit(h, mask)
        return self.synthesis(self.act(h), mask)
