"""``mimi``: Mimi's encoder (Kyutai): a causal SEANet, a causal transformer, a strided frame-rate convolution.

The ``audio`` encoder (causal, zero padding, no bottleneck sequence model, ``pad_to="stride"``) maps the
waveform to ``dim``-d frames at ``sample_rate / prod(ratios)`` (25 Hz for Mimi); a ``ContextTransformer``
(causal, sliding ``context``, RoPE, LayerScale, GELU MLP) runs over them; a causal convolution of kernel
``2 * frame_stride`` and stride ``frame_stride`` (no bias, replicate padding) brings them to the token
rate (12.5 Hz). The hop is ``prod(ratios) * frame_stride`` (1920 samples at 24 kHz).

An item of L samples, L not a multiple of the hop, gives ``ceil(L / hop)`` frames, in one of the two
ways the references encode it alone (``pad_to``): ``"stride"`` as transformers' ``MimiModel``, every
convolution extending its input to whole strides (zeros in the SEANet, the last frame repeated in the
frame-rate convolution); ``"hop"`` as moshi's ``MimiModel``, the item zero-padded to whole hops first.
In a zero-padded batch with ``lengths`` each item gets exactly that, whatever the other items and the
padding. Being causal throughout, it streams.
"""

from __future__ import annotations

from collections.abc import Sequence

from einops import rearrange
from torch import Tensor

from discotok.encoders.audio import PAD_TO, AudioEncoder
from discotok.encoders.base import EncoderOutput, WaveformEncoder
from discotok.layout import Layout
from discotok.nn.context_transformer import ContextTransformer
from discotok.nn.conv1d import Conv1d, length_mask
from discotok.nn.streaming import Chain, StreamingConv
from discotok.nn.waveform import check_audio_batch, check_lengths
from discotok.registry import ENCODERS


@ENCODERS.register("mimi")
class MimiEncoder(WaveformEncoder):
    """Waveforms (B, in_channels, T), T a multiple of ``hop_length`` -> (B, T / hop, dim)."""

    def __init__(
        self,
        dim: int = 512,
        in_channels: int = 1,
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
        pad_to: str = "stride",
    ) -> None:
        super().__init__()
        if pad_to not in PAD_TO:
            raise ValueError(f"pad_to must be one of {PAD_TO}, got {pad_to!r}")
        self.in_channels = in_channels
        self.pad_to = pad_to
        self.seanet = AudioEncoder(dim, in_channels, channels, ratios, dilations, kernel_size, last_kernel_size,
                                   residual_kernel_size, compress, "elu", "none", causal=True, pad_to="stride")
        self.transformer = ContextTransformer(dim, layers, heads, mlp_dim, context, layer_scale, rope_theta, norm_eps)
        self.frame_stride = int(frame_stride)
        self.downsample = Conv1d(dim, dim, 2 * self.frame_stride, self.frame_stride, causal=True, pad_mode="replicate",
                                 bias=False)
        self.hop_length = self.seanet.hop_length * self.frame_stride

    def stream(self) -> Chain:
        """This encoder fed chunk by chunk: ``push`` waveforms (B, C, m), get latents (B, dim, n) of the frames
        they complete (the transformer keeps a KV cache of its context); ``flush`` at the end of the input."""
        steps = [self.seanet.stream(), self.transformer.stream(), StreamingConv(self.downsample)]
        return Chain(steps, pad_to=self.hop_length if self.pad_to == "hop" else None)

    def forward(self, x: Tensor, lengths: Tensor | None = None, num_tokens: int | None = None) -> EncoderOutput:
        """``lengths`` (B,) valid samples per item, or None when every item fills ``x``."""
        check_audio_batch(x, self.in_channels, self.hop_length)
        if lengths is not None:
            lengths = check_lengths(lengths, x.shape[0], x.shape[-1]).to(x.device)
            if self.pad_to == "hop":  # the item zero-padded to whole hops, as alone
                lengths = -(-lengths // self.hop_length) * self.hop_length
        h = rearrange(self.seanet(x, lengths).z, "b n d -> b d n")
        h = self.transformer(h)
        frames = None if lengths is None else -(-lengths // self.seanet.hop_length)
        h = self.downsample(h, length_mask(frames, h.shape[-1]))
        return EncoderOutput(rearrange(h, "b d n -> b n d"), Layout("frames", (h.shape[-1],)))
