"""Image reconstruction metrics for images in [-1, 1]."""

from __future__ import annotations

from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio


def psnr(x_hat: Tensor, x: Tensor) -> Tensor:
    """PSNR in dB of each image (B,) for images in [-1, 1] (reconstructions clamped first)."""
    return peak_signal_noise_ratio(
        x_hat.detach().float().clamp(-1, 1), x.float(), data_range=2.0, reduction="none", dim=(1, 2, 3)
    )


def ssim(x_hat: Tensor, x: Tensor) -> Tensor:
    """SSIM of each image (B,) for images in [-1, 1] (Gaussian window 11, sigma 1.5, on [0, 1])."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    a = x_hat.detach().float().clamp(-1, 1).add(1).div(2)
    b = x.detach().float().clamp(-1, 1).add(1).div(2)
    return structural_similarity_index_measure(a, b, data_range=1.0, reduction="none")
