"""Training losses: reconstruction now; perceptual, adversarial and spectral terms join here."""

from discotok.losses.reconstruction import ReconstructionLoss

__all__ = ["ReconstructionLoss"]
