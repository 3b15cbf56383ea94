"""Metrics: image and audio quality, Fréchet distance and codebook usage over whole datasets."""

from discotok.metrics.audio import mel_distance, pesq, si_snr, stft_distance, stoi
from discotok.metrics.codebook import CodebookUsage, ResidualShares
from discotok.metrics.image import psnr, ssim, thumbnail, thumbnail_bits

__all__ = ["CodebookUsage", "ResidualShares", "mel_distance", "pesq", "psnr", "si_snr", "ssim", "stft_distance", "stoi",
           "thumbnail", "thumbnail_bits"]
