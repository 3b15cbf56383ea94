"""Training losses, built by registered name (``LOSSES``): pixel reconstruction, perceptual
(LPIPS, any timm backbone) and the adversarial terms; spectral terms join here."""

from discotok.losses.adversarial import AdversarialLoss
from discotok.losses.perceptual import LPIPS, LPIPSLoss, MissingWeightsError
from discotok.losses.reconstruction import ReconstructionLoss
from discotok.losses.timm_perceptual import TimmPerceptualLoss
from discotok.registry import LOSSES

__all__ = ["LOSSES", "LPIPS", "AdversarialLoss", "LPIPSLoss", "MissingWeightsError", "ReconstructionLoss", "TimmPerceptualLoss"]
