"""``identity``: no quantization — continuous tokens, to be quantized after training (TokenBridge).

A tokenizer trained with it has no ids: ``Tokenizer.encode`` and ``decode`` refuse it with a
message pointing to ``discotok quantize-after``, which fits a per-dimension scalar quantizer
(``discotok/quantizers/scalar.py``) to the encoder's latents on data and writes a discrete
tokenizer with the same encoder and decoder. ``Tokenizer.encode_latents`` gives the latents.

Optional training regularisers make the latents easier to quantize later: ``noise_std``
adds Gaussian noise to ``z_q`` in training (the decoder learns to tolerate small errors),
and ``l2_weight`` pulls the latents towards 0 so the noise cannot be escaped by scaling up
(together a VAE with a fixed posterior std: its KL term is ``0.5 mean(z^2)`` up to a constant).
"""

from __future__ import annotations

import torch
from torch import Tensor

from discotok.quantizers.base import Quantizer, QuantizerOutput
from discotok.quantizers.precision import full_precision
from discotok.registry import QUANTIZERS


class ContinuousTokensError(ValueError):
    """A continuous (``identity``) tokenizer was asked for ids."""


NO_IDS = (
    "quantizer 'identity' is continuous: its tokens are vectors, not ids. Make a discrete tokenizer "
    "from it with `discotok quantize-after TOKENIZER_DIR data=...` (post-training quantization), "
    "or take the continuous latents with tok.encode_latents(x)"
)


@QUANTIZERS.register("identity")
class IdentityQuantizer(Quantizer):
    """``z_q = z``: continuous tokens (ids of shape (B, N, 0)); see the module docstring.

    Args:
        dim: the latent width (no projections).
        noise_std: std of Gaussian noise added to ``z_q`` in training (0: none).
        l2_weight: weight of ``mean(z^2)`` in the loss (0: none).
    """

    continuous = True

    def __init__(self, dim: int, noise_std: float = 0.0, l2_weight: float = 0.0) -> None:
        super().__init__(dim, dim)
        if noise_std < 0 or l2_weight < 0:
            raise ValueError(f"identity noise_std and l2_weight must be >= 0, got {noise_std} and {l2_weight}")
        self.noise_std = float(noise_std)
        self.l2_weight = float(l2_weight)

    @property
    def codebook_size(self) -> int:
        raise ContinuousTokensError(NO_IDS)

    @full_precision
    def quantize(self, h: Tensor) -> QuantizerOutput:
        """``z_q = h`` (plus noise in training); ``loss = l2_weight * mean(h^2)``; stats: the latents' RMS."""
        z_q = h + self.noise_std * torch.randn_like(h) if self.training and self.noise_std > 0 else h
        power = h.pow(2).mean()
        ids = torch.zeros(*h.shape[:2], 0, dtype=torch.long, device=h.device)
        return QuantizerOutput(z_q, ids, self.l2_weight * power, {"latent_rms": power.detach().sqrt()})

    def lookup(self, ids: Tensor) -> Tensor:
        raise ContinuousTokensError(NO_IDS)

    def check_ids(self, ids: Tensor) -> None:
        raise ContinuousTokensError(NO_IDS)
