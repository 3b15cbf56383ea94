"""``frame``: a waveform encoder that works at the frame rate from its first layer (the audio ``patch``).

One strided convolution of ``window`` taps (default two hops: an analysis window with 50 % overlap) maps
each hop of samples to ``width`` channels, ``depth`` residual units of dilated convolutions refine the
frames, and a 1x1 convolution gives ``latent_dim`` values per frame. With no layer at the sample rate a
step costs a fraction of the SEANet ``audio`` encoder's, so a CPU budget buys many more steps; with a
small hop (40-80 samples at 16 kHz) and a few channels per frame the latent keeps the waveform, phase
included, and the quantizer, not the autoencoder, sets the quality.

With ``lengths`` (B,) every convolution zeroes its input past each item's valid length (the item
zero-padded to whole hops): an item of a padded batch gets, over its frames, the latents it gets alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from einops import rearrange
from torch import Tensor, nn

from discotok.encoders.base import EncoderOutput, WaveformEncoder
from discotok.layout import Layout
from discotok.nn.conv1d import Conv1d, ResidualUnit, apply_mask, length_mask
from discotok.nn.conv1d import activation as make_activation
from discotok.nn.waveform import check_audio_batch, check_lengths
from discotok.registry import ENCODERS


def check_frame_sizes(hop_length: int, window: int | None, dilations: Sequence[int]) -> int:
    """The analysis / synthesis window (default ``2 * hop_length``), after checking the sizes."""
    window = 2 * hop_length if window is None else int(window)
    if hop_length < 1 or window < hop_length or (window - hop_length) % 2:
        raise ValueError(f"need hop_length >= 1 and a window >= hop_length of the same parity, got hop_length="
                         f"{hop_length}, window={window}")
    if any(int(d) < 1 for d in dilations):
        raise ValueError(f"dilations must be positive integers, got {list(dilations)}")
    return window


@ENCODERS.register("frame")
class FrameEncoder(WaveformEncoder):
    """Waveforms (B, in_channels, T), T a multiple of ``hop_length`` -> (B, T / hop_length, latent_dim)."""

    def __init__(
        self,
        latent_dim: int,
        in_channels: int = 1,
        hop_length: int = 80,
        window: int | None = None,
        width: int = 256,
        dilations: Sequence[int] = (1, 3, 9),
        kernel_size: int = 3,
        compress: int = 2,
        activation: str = "elu",
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.hop_length = int(hop_length)
        window = check_frame_sizes(self.hop_length, window, dilations)
        self.analysis = Conv1d(in_channels, width, window, stride=self.hop_length)
        self.units = nn.ModuleList(ResidualUnit(width, kernel_size, int(d), compress, activation) for d in dilations)
        self.act = make_activation(activation, width)
        self.head = Conv1d(width, latent_dim, 1)

    def forward(self, x: Tensor, lengths: Tensor | None = None, num_tokens: int | None = None) -> EncoderOutput:
        """``lengths`` (B,) valid samples per item, or None when every item fills ``x``."""
        check_audio_batch(x, self.in_channels, self.hop_length)
        mask = frames = None
        if lengths is not None:
            lengths = check_lengths(lengths, x.shape[0], x.shape[-1]).to(x.device)
            x = apply_mask(x, length_mask(lengths, x.shape[-1]))
            frames = -(-lengths // self.hop_length)
            mask = length_mask(frames * self.hop_length, x.shape[-1])
        h = self.analysis(x, mask)
        mask = length_mask(frames, h.shape[-1])
        for unit in self.units:
            h = unit(h, mask)
        z = rearrange(self.head(self.act(h), mask), "b d n -> b n d")
        return EncoderOutput(z, Layout("frames", (z.shape[1],)))
