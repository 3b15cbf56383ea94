"""Metrics: image quality and codebook usage over whole datasets."""

from discotok.metrics.codebook import CodebookUsage
from discotok.metrics.image import psnr

__all__ = ["CodebookUsage", "psnr"]
