"""Decoders: one file per family, built by registered name."""

from discotok.decoders import (  # noqa: F401
    absent, audio, cosmos, flextok, flow, frame, grid, magvit2, maskgit_vqgan, mimi, movq, patch, taming, titok, vit,
    vocos, xcodec,
)
from discotok.registry import DECODERS

__all__ = ["DECODERS"]

