"""Training losses, built by registered name (``LOSSES``): reconstruction now; perceptual,
adversarial and spectral terms join here."""

from discotok.losses.reconstruction import ReconstructionLoss
from discotok.registry import LOSSES

__all__ = ["LOSSES", "ReconstructionLoss"]
