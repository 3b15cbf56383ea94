"""Pixel (or sample) reconstruction loss: weighted L1 + L2."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from discotok.registry import LOSSES


@LOSSES.register("pixel")
class ReconstructionLoss(nn.Module):
    """Images: ``l1_weight * |x_hat - x| + l2_weight * (x_hat - x)^2``, means over all elements."""

    def __init__(self, l1_weight: float = 1.0, l2_weight: float = 0.0) -> None:
        super().__init__()
        if l1_weight < 0 or l2_weight < 0 or l1_weight + l2_weight == 0:
            raise ValueError(f"need non-negative weights, not both zero; got l1={l1_weight}, l2={l2_weight}")
        self.l1_weight = l1_weight
        self.l2_weight = l2_weight

    def forward(self, x_hat: Tensor, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the weighted loss and its detached parts (``l1``, ``l2``)."""
        l1 = F.l1_loss(x_hat, x)
        l2 = F.mse_loss(x_hat, x)
        return self.l1_weight * l1 + self.l2_weight * l2, {"l1": l1.detach(), "l2": l2.detach()}
