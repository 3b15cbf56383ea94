"""``absent``: the decoder of a checkpoint that has none (Chameleon's VQ-VAE in transformers: encoder and quantizer
only). It keeps the decoder contract (``out_channels``, a grid of ids) and refuses every decode with ``message``,
a ``ValueError`` that says what is missing and where a decoder can come from; encoding is unaffected.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from discotok.decoders.base import Decoder
from discotok.layout import Layout
from discotok.registry import DECODERS

DEFAULT_MESSAGE = "this checkpoint has no decoder: its tokenizer encodes only"


@DECODERS.register("absent")
class AbsentDecoder(Decoder):
    """No weights; ``forward`` raises ``ValueError(message)``."""

    decodes = False

    def __init__(self, latent_dim: int, out_channels: int = 3, message: str = DEFAULT_MESSAGE) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.out_channels = out_channels
        self.message = message

    def forward(
        self, z_q: Tensor, layout: Layout, keep: Tensor | None = None, size: Sequence[int] | None = None,
        lengths: Tensor | None = None,
    ) -> Tensor:
        raise ValueError(self.message)
