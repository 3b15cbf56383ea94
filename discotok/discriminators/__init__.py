"""Discriminators for adversarial training, built by registered name (``DISCRIMINATORS``)."""

from discotok.discriminators import patch  # noqa: F401  (registers "patch")
from discotok.discriminators.base import DiscriminatorOutput
from discotok.registry import DISCRIMINATORS

__all__ = ["DISCRIMINATORS", "DiscriminatorOutput"]
