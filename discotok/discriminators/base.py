"""The discriminator contract shared by image and audio discriminators.

Every discriminator is an ``nn.Module`` built by registered name from ``DISCRIMINATORS``;
``forward(x)`` takes images ``(B, 3, H, W)`` or waveforms ``(B, C, T)`` and returns one
``DiscriminatorOutput``. A discriminator made of several sub-discriminators (multi-period,
multi-scale STFT) gives one logits tensor and one list of feature maps per sub-discriminator;
a single patch discriminator gives lists of length one.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class DiscriminatorOutput:
    """logits:   one tensor of real/fake scores per sub-discriminator (any shape).
    features: per sub-discriminator, its intermediate activations, for feature matching.
    """

    logits: list[Tensor]
    features: list[list[Tensor]]
