"""Adversarial loss terms over ``DiscriminatorOutput``: hinge, feature matching, LeCAM.

Each sums over sub-discriminators and averages within each, so a multi-period or
multi-scale discriminator and a single patch discriminator are weighted alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from discotok.discriminators.base import DiscriminatorOutput


def hinge_d_loss(real: DiscriminatorOutput, fake: DiscriminatorOutput) -> Tensor:
    """Discriminator hinge loss: ``mean(relu(1 - D(x))) + mean(relu(1 + D(x̂)))`` per sub-discriminator."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real.logits, fake.logits, strict=True))


def hinge_g_loss(fake: DiscriminatorOutput) -> Tensor:
    """Generator side of the hinge loss: ``-mean(D(x̂))`` per sub-discriminator."""
    return sum(-f.mean() for f in fake.logits)


def feature_matching(real: DiscriminatorOutput, fake: DiscriminatorOutput) -> Tensor:
    """Mean L1 between the discriminator's features of real (detached) and reconstructed inputs."""
    pairs = [(r, f) for rs, fs in zip(real.features, fake.features, strict=True) for r, f in zip(rs, fs, strict=True)]
    if not pairs:
        return torch.zeros(())
    return sum(F.l1_loss(f, r.detach()) for r, f in pairs) / len(pairs)


def lecam(real: DiscriminatorOutput, fake: DiscriminatorOutput, ema_real: Tensor, ema_fake: Tensor) -> Tensor:
    """LeCAM regulariser (Tseng et al. 2021): ``mean(relu(D(x) - ema_fake)^2) + mean(relu(ema_real - D(x̂))^2)``.

    ``ema_real`` / ``ema_fake`` are running means of the discriminator's outputs on real and
    reconstructed inputs, kept by the caller.
    """
    return sum(
        F.relu(r - ema_fake).pow(2).mean() + F.relu(ema_real - f).pow(2).mean()
        for r, f in zip(real.logits, fake.logits, strict=True)
    )
