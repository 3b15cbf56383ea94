"""Image reconstruction metrics for images in [-1, 1]."""

from __future__ import annotations

from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio


def psnr(x_hat: Tensor, x: Tensor) -> Tensor:
    """PSNR in dB of each image (B,) for images in [-1, 1] (reconstructions clamped first)."""
    return peak_signal_noise_ratio(
        x_hat.detach().float().clamp(-1, 1), x.float(), data_range=2.0, reduction="none", dim=(1, 2, 3)
    )
