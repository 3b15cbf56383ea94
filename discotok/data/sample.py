"""Sample photos that ship with scikit-image: the embedded default training data."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from discotok.data.images import load_image

TRAIN_PHOTOS = (
    "astronaut.png", "rocket.jpg", "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png",
    "retina.jpg", "camera.png", "coins.png", "moon.png", "brick.png", "grass.png", "gravel.png",
)
VAL_PHOTOS = ("chelsea.png", "coffee.png")


def photo_dir() -> Path:
    """scikit-image's bundled data folder (no download needed)."""
    import skimage.data

    return Path(skimage.data.data_dir)


def load_sample_photos(split: str = "train", short_side: int = 256) -> list[Image.Image]:
    """RGB photos of the ``train`` or ``val`` split (held-out photos), shorter side resized."""
    names = {"train": TRAIN_PHOTOS, "val": VAL_PHOTOS}[split]
    photos = []
    for name in names:
        img = load_image(photo_dir() / name)
        scale = short_side / min(img.size)
        photos.append(img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC))
    return photos
