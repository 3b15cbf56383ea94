"""``vocos``: ConvNeXt blocks at the frame rate and an inverse-STFT head (Vocos, WavTokenizer).

The trunk never upsamples: each frame predicts one STFT column (log-magnitude and phase per
bin and channel), and ``torch.istft`` (hop = the tokenizer's hop, Hann window of ``n_fft``,
centred, or with ``padding="same"`` WavTokenizer's trim of ``(n_fft - hop) / 2``) turns N columns into exactly
N * hop samples. Far cheaper than transposed
convolutions at the same quality (Siuzdak 2023). With ``lengths`` the trunk masks padded
frames; the overlap-add still spans ``n_fft / 2`` samples around an item's end, so unlike the
``audio`` decoder the last samples of a padded item differ slightly from decoding it alone.
``attention=True`` adds WavTokenizer's ``pos_net`` (residual blocks and one self-attention block over frames,
``discotok.nn.pos_net``) between the input convolution and the first LayerNorm.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from discotok.decoders.audio import check_frames
from discotok.decoders.base import WaveformDecoder
from discotok.nn.conv1d import apply_mask, length_mask
from discotok.nn.istft import istft_same
from discotok.nn.pos_net import PosNet
from discotok.registry import DECODERS
from discotok.layout import Layout


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (kernel 7) -> LayerNorm -> MLP (GELU) -> layer scale, plus identity."""

    def __init__(self, dim: int, hidden: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        h = rearrange(self.dwconv(apply_mask(x, mask)), "b d n -> b n d")
        return x + rearrange(self.gamma * self.mlp(self.norm(h)), "b n d -> b d n")


@DECODERS.register("vocos")
class VocosDecoder(WaveformDecoder):
    """Frames (B, N, latent_dim) -> waveforms (B, out_channels, N * hop_length) through an iSTFT."""

    def __init__(
        self,
        latent_dim: int,
        out_channels: int = 1,
        hop_length: int = 320,
        n_fft: int = 1280,
        width: int = 512,
        hidden: int = 1536,
        depth: int = 8,
        layer_scale: float | None = None,
        max_log_magnitude: float = 4.6,
        attention: bool = False,
        padding: str = "center",
    ) -> None:
        super().__init__()
        if n_fft < hop_length or n_fft % 2:
            raise ValueError(f"n_fft must be even and >= hop_length, got n_fft={n_fft}, hop_length={hop_length}")
        if padding not in ("center", "same"):
            raise ValueError(f"padding must be 'center' or 'same', got {padding!r}")
        self.padding = padding
        self.out_channels = out_channels
        self.hop_length = hop_length
        self.n_fft = n_fft
        self.max_log_magnitude = max_log_magnitude
        self.embed = nn.Conv1d(latent_dim, width, 7, padding=3)
        self.pos_net = PosNet(width) if attention else None
        self.norm = nn.LayerNorm(width, eps=1e-6)
        scale = layer_scale if layer_scale is not None else 1.0 / depth
        self.blocks = nn.ModuleList(ConvNeXtBlock(width, hidden, scale) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, eps=1e-6)
        self.bins = n_fft // 2 + 1
        self.head = nn.Linear(width, out_channels * 2 * self.bins)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(
        self, z_q: Tensor, layout: Layout, keep: Tensor | None = None, size: Sequence[int] | None = None,
        lengths: Tensor | None = None,
    ) -> Tensor:
        """``lengths`` (B,) valid frames per item mask the trunk's padded frames."""
        check_frames(z_q, layout, "vocos")
        mask = length_mask(None if lengths is None else lengths.to(z_q.device).long(), z_q.shape[1])
        h = self.embed(apply_mask(rearrange(z_q, "b n d -> b d n"), mask))
        if self.pos_net is not None:
            h = self.pos_net(h, mask)
        h = rearrange(self.norm(rearrange(h, "b d n -> b n d")), "b n d -> b d n")
        for block in self.blocks:
            h = block(h, mask)
        out = self.head(self.final_norm(rearrange(h, "b d n -> b n d")))
        log_mag, phase = rearrange(out.float(), "b n (c two f) -> two (b c) f n", c=self.out_channels, two=2)
        spec = torch.polar(log_mag.clamp(max=self.max_log_magnitude).exp(), phase)
        if mask is not None:
            spec = spec * mask.repeat_interleave(self.out_channels, 0)
        n = z_q.shape[1]
        if self.padding == "same":
            wave = istft_same(spec, self.n_fft, self.hop_length, self.window.float())
        else:
            wave = torch.istft(
                spec, self.n_fft, self.hop_length, window=self.window.float(), center=True, length=n * self.hop_length
            )
        return rearrange(wave, "(b c) t -> b c t", c=self.out_channels).to(z_q.dtype)

