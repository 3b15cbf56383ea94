"""Data: image loading with clear errors, the sample photos, datamodules."""

from typing import Any

from discotok.data.images import ImageLoadError, load_image, load_image_tensor

__all__ = ["ImageDataModule", "ImageLoadError", "load_image", "load_image_tensor"]


def __getattr__(name: str) -> Any:
    """Import the datamodule (and Lightning) only when asked for."""
    if name == "ImageDataModule":
        from discotok.data.datamodule import ImageDataModule

        return ImageDataModule
    raise AttributeError(name)
