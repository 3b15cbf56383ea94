"""``mimi``: Mimi's decoder (Kyutai): a transposed frame-rate convolution, a causal transformer, a causal SEANet.

Mirrors the ``mimi`` encoder: a causal transposed convolution of kernel ``2 * frame_stride`` and stride
``frame_stride`` (no bias; ``upsample_groups`` groups, Mimi's is depthwise) brings the tokens (12.5 Hz)
to the SEANet's frame rate (25 Hz), a ``ContextTransformer`` runs over them and the ``audio`` decoder
(causal, zero padding, no sequence model, no final activation) turns them into samples. N tokens decode
to exactly N * hop samples (Mimi's 72000 samples encode to 38 tokens, which decode to 72960); the
tokenizer cuts them to the input's length. Causal throughout: a prefix of the ids decodes to a prefix of
the waveform, and it streams.
"""

from __future__ import annotations

from collections.abc import Sequence

from einops import rearrange
from torch import Tensor

from discotok.decoders.audio import AudioDecoder, check_frames
from discotok.decoders.base import WaveformDecoder
from discotok.layout import Layout
from discotok.nn.context_transformer import ContextTransformer
from discotok.nn.conv1d import ConvTranspose1d
from discotok.nn.streaming import Chain, StreamingConvTranspose
from discotok.registry import DECODERS


@DECODERS.register("mimi")
class MimiDecoder(WaveformDecoder):
    """Tokens (B, N, dim) -> waveforms (B, out_channels, N * hop_length)."""

    def __init__(
        self,
        dim: int = 512,
        out_channels: int = 1,
        channels: int = 64,
        ratios: Sequence[int] = (8, 6, 5, 4),
        dilations: Sequence[int] = (1,),
        kernel_size: int = 7,
        last_kernel_size: int = 3,
        residual_kernel_size: int = 3,
        compress: int = 2,
        layers: int = 8,
        heads: int = 8,
        mlp_dim: int = 2048,
        context: int | None = 250,
        layer_scale: float | None = 0.01,
        rope_theta: float = 10_000.0,
        norm_eps: float = 1e-5,
        frame_stride: int = 2,
        upsample_groups: int | None = None,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.frame_stride = int(frame_stride)
        groups = dim if upsample_groups is None else int(upsample_groups)
        self.upsample = ConvTranspose1d(dim, dim, 2 * self.frame_stride, self.frame_stride, causal=True, groups=groups,
                                        bias=False)
        self.transformer = ContextTransformer(dim, layers, heads, mlp_dim, context, layer_scale, rope_theta, norm_eps)
        self.seanet = AudioDecoder(dim, out_channels, channels, ratios, dilations, kernel_size, last_kernel_size,
                                   residual_kernel_size, compress, "elu", "none", causal=True)
        self.hop_length = self.seanet.hop_length * self.frame_stride

    def stream(self) -> Chain:
        """This decoder fed token chunks (B, dim, n), giving their samples (B, C, n * hop) as they come."""
        return Chain([StreamingConvTranspose(self.upsample), self.transformer.stream(), self.seanet.stream()])

    def forward(
        self, z_q: Tensor, layout: Layout, keep: Tensor | None = None, size: Sequence[int] | None = None,
        lengths: Tensor | None = None,
    ) -> Tensor:
        """``lengths`` (B,) valid tokens per item: tokens past them never reach the valid samples."""
        check_frames(z_q, layout, "mimi")
        h = self.transformer(self.upsample(rearrange(z_q, "b n d -> b d n")))
        frames = None if lengths is None else lengths.to(z_q.device).long() * self.frame_stride
        return self.seanet(rearrange(h, "b d n -> b n d"), Layout("frames", (h.shape[-1],)), lengths=frames)
