"""Training losses, built by registered name (``LOSSES``): pixel and audio reconstruction
(waveform L1 + multi-scale mel + multi-resolution STFT); perceptual and adversarial terms join here."""

from discotok.losses.audio import AudioReconstructionLoss
from discotok.losses.reconstruction import ReconstructionLoss
from discotok.registry import LOSSES

__all__ = ["LOSSES", "AudioReconstructionLoss", "ReconstructionLoss"]
