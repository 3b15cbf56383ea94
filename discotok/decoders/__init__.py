"""Decoders: one file per family, built by registered name."""

from discotok.decoders import absent, audio, flow, grid, magvit2, maskgit_vqgan, movq, patch, taming, titok, vit, vocos  # noqa: F401
from discotok.registry import DECODERS

__all__ = ["DECODERS"]

