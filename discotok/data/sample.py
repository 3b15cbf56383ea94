"""Sample photos that ship with the dependencies: the embedded default's training and validation data.

Every photo of scikit-image's data folder that is a real photograph (colour and grey, no
synthetic test patterns, masks, tiny files or the grass / gravel noise textures) plus matplotlib's Grace Hopper portrait.
``VALIDATION_PHOTOS`` never enter training: the default run validates on whole photos it
has not seen. ``motorcycle_right.png`` is left out of both (it is the other half of the
stereo pair ``motorcycle_left.png`` and would leak between them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from discotok.data.images import load_image

# Colour photos first; the grey ones teach structure (colour comes back with the colour jitter).
TRAINING_PHOTOS = (
    "astronaut.png", "chelsea.png", "rocket.jpg", "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png",
    "retina.jpg", "camera.png", "coins.png", "moon.png", "cell.png", "clock_motion.png", "page.png",
)
VALIDATION_PHOTOS = ("coffee.png", "grace_hopper.jpg", "brick.png")
MATPLOTLIB_PHOTOS = ("grace_hopper.jpg",)


def photo_dir() -> Path:
    """The data folder inside the scikit-image package (no download needed). Not ``skimage.data.data_dir``:
    that is pooch's download cache whenever pooch is installed (librosa brings it), and starts empty."""
    import skimage

    return Path(skimage.__file__).parent / "data"


def photo_path(name: str) -> Path:
    """The file of a bundled photo: matplotlib's sample data or scikit-image's data folder."""
    if name in MATPLOTLIB_PHOTOS:
        import matplotlib

        return Path(matplotlib.get_data_path()) / "sample_data" / name
    return photo_dir() / name


def load_sample_photos(short_side: int = 256, names: Sequence[str] = TRAINING_PHOTOS) -> list[Image.Image]:
    """The bundled photos ``names`` as RGB, each resized so its shorter side is ``short_side``."""
    photos = []
    for name in names:
        img = load_image(photo_path(name))
        scale = short_side / min(img.size)
        photos.append(img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC))
    return photos
