"""The decoder contract, and what a generative decoder adds.

Every decoder is a ``Decoder``: ``forward(z_q, layout, keep=None, size=None, lengths=None)``
maps quantized tokens (B, N, D) on their ``Layout`` back to the modality's signal. The
tokenizer passes

* ``keep`` (B,) nested-dropout prefix lengths only to decoders that declare ``masks_tokens``
  (positions at or past ``keep[b]`` become the decoder's mask token);
* ``size``, the input's spatial size (H, W), which decoders of 1-D token sequences decode to
  (a grid layout fixes the size by itself, so grid decoders ignore it);
* ``lengths`` (B,) valid frames per item of a zero-padded audio batch (frame decoders only);
* ``condition`` (B, L, E), features the decoder is conditioned on, only to decoders that are ``conditioned``
  (TA-TiTok's: a CLIP text encoder's per-token output, (B, 77, 768) as published), whose ``forward`` takes it
  as a keyword and raises a ``ValueError`` saying what it needs (``condition_description``) when it is None;
  the tokenizer refuses a condition for every other decoder. ``conditioned`` may depend on the decoder's
  config (set per instance).

``last_layer`` is the parameter VQGAN's adaptive adversarial weight measures gradients at
(None: the decoder has none; a fixed adversarial weight is needed). ``alignment_layer()`` and
``patch_size`` name the feature map representation alignment uses. ``decodes`` is False only for
the stand-in of a checkpoint without a decoder (``absent``): such a tokenizer encodes only, and
evaluation reports its rates and codebook use without quality figures.

``init_from_batch(z_q, layout, target)``: in every training step (training mode, gradients on) of a
deterministic decoder the tokenizer hands it the batch's quantized tokens and the signal they must decode to
before decoding them; a decoder with a data-driven start (the ``patch`` decoder's ``data_init``) fits itself
to the first such batch, the others do nothing.

A generative decoder (``GenerativeDecoder``, e.g. the rectified-flow ``flow`` decoder) is
trained by its own ``loss`` instead of a reconstruction loss, and samples in ``forward``
with the sampler arguments ``timesteps``, ``guidance_scale``, ``seed`` and ``noise`` (deterministic for
a fixed seed); the tokenizer refuses those arguments for every other decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from einops import rearrange
from torch import Tensor, nn

from discotok.layout import Layout

SAMPLER_ARGUMENTS = ("timesteps", "guidance_scale", "seed", "noise")


class Decoder(nn.Module):
    """Base class of every decoder (see the module docstring)."""

    out_channels: int
    masks_tokens: ClassVar[bool] = False
    generative: ClassVar[bool] = False
    decodes: ClassVar[bool] = True
    conditioned: bool = False
    condition_description: str = ""
    patch_size: int | None = None

    def forward(
        self,
        z_q: Tensor,
        layout: Layout,
        keep: Tensor | None = None,
        size: Sequence[int] | None = None,
        lengths: Tensor | None = None,
    ) -> Tensor:
        """Tokens (B, N, D) on ``layout`` -> the signal (images (B, C, H, W), waveforms (B, C, N * hop))."""
        raise NotImplementedError

    @property
    def last_layer(self) -> nn.Parameter | None:
        """The output layer's weight, for the adaptive adversarial weight; None when there is none."""
        return None

    def alignment_layer(self) -> str | None:
        """The module path (inside this decoder) of the feature map representation alignment uses by default."""
        return None

    def init_from_batch(self, z_q: Tensor, layout: Layout, target: Tensor) -> None:
        """A training batch's tokens (B, N, D) on ``layout`` and the signal they decode to; a decoder with a
        data-driven start fits itself to the first one. The default does nothing."""


def check_grid_layout(z_q: Tensor, layout: Layout, decoder: str) -> None:
    """Raise ``ValueError`` unless ``layout`` is a 2-D grid of exactly ``z_q``'s (B, N, D) N tokens."""
    if layout.kind != "grid" or layout.num_tokens != z_q.shape[1]:
        raise ValueError(f"{decoder} decoder needs a grid layout of {z_q.shape[1]} tokens, got {layout}")


def token_map(z_q: Tensor, layout: Layout, decoder: str) -> Tensor:
    """Tokens (B, N, D) on a checked grid ``layout`` as a (B, D, h, w) feature map."""
    check_grid_layout(z_q, layout, decoder)
    return rearrange(z_q, "b (h w) d -> b d h w", h=layout.shape[0], w=layout.shape[1])


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


class GenerativeDecoder(Decoder):
    """A decoder trained by its own ``loss`` that decodes by sampling (see the module docstring).

    ``seed`` is the sampler's default seed; validation draws its training-loss noise from it too.
    """

    generative = True
    seed: int = 0

    def loss(
        self, z_q: Tensor, layout: Layout, x: Tensor, keep: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> GenerativeLoss:
        """The decoder's own objective for reconstructing ``x`` from the tokens (reproducible with ``generator``)."""
        raise NotImplementedError

    def forward(
        self,
        z_q: Tensor,
        layout: Layout,
        keep: Tensor | None = None,
        size: Sequence[int] | None = None,
        lengths: Tensor | None = None,
        timesteps: int | None = None,
        guidance_scale: float | None = None,
        seed: int | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """A sample for the tokens; unset sampler arguments take the decoder's defaults; ``noise`` (the sampler's
        starting noise, the shape the decoder documents) replaces the one ``seed`` draws."""
        raise NotImplementedError


class WaveformDecoder(Decoder):
    """A decoder of frames (B, N, D) to waveforms (B, out_channels, N * hop_length)."""

    hop_length: int

    def stream(self) -> Any:
        """This decoder fed frame chunks (``push(z)`` with z (B, D, n) -> samples, ``flush()``), for causal decoders."""
        raise ValueError(f"decoder {type(self).__name__} does not stream")
