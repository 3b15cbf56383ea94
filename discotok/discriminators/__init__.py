"""Discriminators for adversarial training, built by registered name (``DISCRIMINATORS``)."""

from discotok.discriminators import mpd, msstft, multi, patch  # noqa: F401  (register them)
from discotok.discriminators.base import DiscriminatorOutput
from discotok.registry import DISCRIMINATORS

__all__ = ["DISCRIMINATORS", "DiscriminatorOutput"]
