"""Log pictures and sounds to whichever of a run's loggers take them (TensorBoard, Weights & Biases)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor


def log_image(loggers: Sequence[Any], tag: str, image: Tensor, step: int) -> None:
    """Log an image (3, H, W) in [0, 1] to every logger that takes images."""
    for logger in loggers:
        add_image = getattr(getattr(logger, "experiment", None), "add_image", None)
        if callable(add_image):
            add_image(tag, image, step)
        elif hasattr(logger, "log_image"):
            logger.log_image(key=tag, images=[image], step=step)


def log_audio(loggers: Sequence[Any], tag: str, wave: Tensor, sample_rate: int, step: int) -> None:
    """Log a waveform (C, T) in [-1, 1], mixed to mono, to every logger that takes sounds."""
    for logger in loggers:
        add_audio = getattr(getattr(logger, "experiment", None), "add_audio", None)
        if callable(add_audio):
            add_audio(tag, wave.mean(0).float(), step, sample_rate=sample_rate)
