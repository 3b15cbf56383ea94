"""The contract of a generative decoder: trained by its own loss, decoding by sampling.

A deterministic decoder maps ``z_q`` to ``x_hat`` and trains on a reconstruction loss. A
generative decoder (``generative = True``, e.g. the rectified-flow ``flow`` decoder) instead

* exposes ``loss(z_q, layout, x, keep=None, generator=None) -> GenerativeLoss``: its own
  training objective for reconstructing ``x`` from the tokens, plus a differentiable one-step
  estimate of ``x`` that optional pixel-space terms (perceptual, adversarial) may use;
* samples in ``forward(z_q, layout, ..., timesteps=, guidance_scale=, seed=)``, deterministic
  for a fixed seed.

``Tokenizer.forward`` calls ``loss`` for such decoders and ``TokenizerModule`` uses it as the
reconstruction term; everything else (quantizer, encoder, the file format) is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

SAMPLER_ARGUMENTS = ("timesteps", "guidance_scale", "seed")


@dataclass
class GenerativeLoss:
    """A generative decoder's training objective on one batch.

    loss:  scalar, the decoder's own loss (e.g. the rectified-flow velocity MSE).
    parts: detached scalars for logging.
    x_hat: (B, C, H, W) a differentiable one-step estimate of the input, for optional
           pixel-space terms; not a sample.
    """

    loss: Tensor
    x_hat: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)


def is_generative(decoder: nn.Module) -> bool:
    """Whether ``decoder`` follows the generative-decoder contract (trained by its own ``loss``)."""
    return bool(getattr(decoder, "generative", False))
