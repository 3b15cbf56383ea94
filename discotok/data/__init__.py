"""Data: image and audio loading with clear errors, the sample photos and speech, datamodules."""

from typing import Any

from discotok.data.images import ImageLoadError, load_image, load_image_tensor

__all__ = ["AudioDataModule", "AudioLoadError", "ImageDataModule", "ImageLoadError", "load_audio", "load_image",
           "load_image_tensor", "save_audio"]
LAZY = {
    "ImageDataModule": "discotok.data.datamodule",
    "AudioDataModule": "discotok.data.audio_datamodule",
    "AudioLoadError": "discotok.data.audio",
    "load_audio": "discotok.data.audio",
    "save_audio": "discotok.data.audio",
}


def __getattr__(name: str) -> Any:
    """Import the datamodules (and Lightning) and the audio I/O (soundfile, torchaudio) only when asked for."""
    if name in LAZY:
        import importlib

        return getattr(importlib.import_module(LAZY[name]), name)
    raise AttributeError(name)
