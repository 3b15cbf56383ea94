"""Encoders: one file per family, one contract (``discotok.encoders.base.Encoder``), built by registered name."""

from discotok.encoders import (  # noqa: F401
    audio, cosmos, flexible, flextok, frame, grid, magvit2, mimi, patch, taming, titok, vit, xcodec,
)
from discotok.encoders.base import Encoder, EncoderOutput
from discotok.registry import ENCODERS

__all__ = ["ENCODERS", "Encoder", "EncoderOutput"]
