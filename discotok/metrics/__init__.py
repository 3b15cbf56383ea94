"""Metrics: image quality, Fréchet distance and codebook usage over whole datasets."""

from discotok.metrics.codebook import CodebookUsage
from discotok.metrics.image import psnr, ssim

__all__ = ["CodebookUsage", "psnr", "ssim"]
