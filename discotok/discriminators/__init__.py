"""Discriminators for adversarial training, built by registered name (``DISCRIMINATORS``)."""

from discotok.discriminators import mpd, msstft, multi  # noqa: F401  (register mpd, msstft, multi)
from discotok.discriminators.base import DiscriminatorOutput
from discotok.registry import DISCRIMINATORS

__all__ = ["DISCRIMINATORS", "DiscriminatorOutput"]
