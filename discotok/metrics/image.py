"""Image reconstruction metrics for images in [-1, 1]."""

from __future__ import annotations

import torch.nn.functional as F
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


def thumbnail(x: Tensor, size: int) -> Tensor:
    """The classical baseline at ``size * size * 24`` bits: each image (B, 3, H, W) box-averaged down to
    ``size`` x ``size`` pixels, then scaled back up with bicubic interpolation (float, before any 8-bit rounding)."""
    small = F.adaptive_avg_pool2d(x.float(), size)
    return F.interpolate(small, size=x.shape[-2:], mode="bicubic", align_corners=False).clamp(-1, 1)


def thumbnail_bits(size: int) -> int:
    """Bits of a ``size`` x ``size`` RGB thumbnail at 8 bits per channel."""
    return size * size * 3 * 8
