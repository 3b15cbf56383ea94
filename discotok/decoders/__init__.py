"""Decoders: one file per family, built by registered name."""

from discotok.decoders import audio, flow, grid, mimi, patch, taming, titok, vit, vocos  # noqa: F401
from discotok.registry import DECODERS

__all__ = ["DECODERS"]

