"""Sample photos that ship with scikit-image: the embedded default training data."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from discotok.data.images import load_image

# Mostly colour photos (a tokenizer trained on grey ones loses colour), two grey ones.
PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg", "ihc.png",
    "motorcycle_left.png", "retina.jpg", "camera.png", "coins.png",
)


def photo_dir() -> Path:
    """scikit-image's bundled data folder (no download needed)."""
    import skimage.data

    return Path(skimage.data.data_dir)


def load_sample_photos(short_side: int = 256) -> list[Image.Image]:
    """The bundled RGB photos, each resized so its shorter side is ``short_side``."""
    photos = []
    for name in PHOTOS:
        img = load_image(photo_dir() / name)
        scale = short_side / min(img.size)
        photos.append(img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC))
    return photos


def split_photos(photos: list[Image.Image], strip: int) -> tuple[list[Image.Image], list[Image.Image]]:
    """Hold out the right-most ``strip`` pixels of every photo: (training parts, held-out strips)."""
    train = [p.crop((0, 0, p.width - strip, p.height)) for p in photos]
    val = [p.crop((p.width - strip, 0, p.width, p.height)) for p in photos]
    return train, val
