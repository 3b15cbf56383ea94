"""Modalities: one object per kind of signal (``image``, ``audio``), owning what is specific to it."""

from discotok.modalities import audio, image  # noqa: F401
from discotok.modalities.base import Batch, Modality, RateAxes
from discotok.registry import MODALITIES

__all__ = ["MODALITIES", "Batch", "Modality", "RateAxes"]
