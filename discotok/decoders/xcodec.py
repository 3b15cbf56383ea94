"""``xcodec``: X-Codec's decoder: a linear map from the code space to the acoustic latent (transformers' ``fc2``),
then the DAC-style ``audio`` decoder (X-Codec's: transposed convolutions giving exactly ``stride`` samples per
input sample, ``upsample_crop="exact"``, and no tanh).

X-Codec's semantic decoder (``decoder_semantic``, ``fc1``) only serves its training loss (reconstructing HuBERT's
features); it is not part of this decoder, and converters leave its tensors out.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from discotok.decoders.audio import AudioDecoder
from discotok.decoders.base import WaveformDecoder
from discotok.layout import Layout
from discotok.registry import DECODERS


@DECODERS.register("xcodec")
class XcodecDecoder(WaveformDecoder):
    """Tokens (B, N, dim) -> mono waveforms (B, 1, N * hop); ``acoustic``: the ``audio`` decoder's keyword arguments."""

    def __init__(self, acoustic: dict, dim: int) -> None:
        super().__init__()
        self.acoustic = AudioDecoder(**{**acoustic, "out_channels": 1})
        self.out_channels = 1
        self.hop_length = self.acoustic.hop_length
        self.fc = nn.Linear(dim, self.acoustic.stem.conv.in_channels)

    def forward(
        self, z_q: Tensor, layout: Layout, keep: Tensor | None = None, size: Sequence[int] | None = None,
        lengths: Tensor | None = None,
    ) -> Tensor:
        """``lengths`` (B,) valid frames per item, as the ``audio`` decoder's."""
        return self.acoustic(self.fc(z_q), layout, keep, size, lengths)
