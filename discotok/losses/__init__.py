"""Training losses, built by registered name (``LOSSES``): pixel and audio reconstruction
(waveform L1 + multi-scale mel + multi-resolution STFT), perceptual (LPIPS, any timm backbone),
representation alignment to a frozen timm teacher (REPA) and the adversarial terms."""

from discotok.losses.adversarial import AdversarialLoss
from discotok.losses.alignment import RepresentationAlignment
from discotok.losses.audio import AudioReconstructionLoss
from discotok.losses.perceptual import LPIPS, LPIPSLoss, MissingWeightsError
from discotok.losses.reconstruction import ReconstructionLoss
from discotok.losses.timm_perceptual import TimmPerceptualLoss
from discotok.registry import LOSSES

__all__ = [
    "LOSSES", "LPIPS", "AdversarialLoss", "AudioReconstructionLoss", "LPIPSLoss", "MissingWeightsError",
    "ReconstructionLoss", "RepresentationAlignment", "TimmPerceptualLoss",
]
