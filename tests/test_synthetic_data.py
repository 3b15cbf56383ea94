"""The default's extra training data: dead-leaves images and colours for grey photos."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from discotok.data.datamodule import ImageDataModule, RandomCrops
from discotok.data.images import pil_to_tensor
from discotok.data.sample import load_sample_photos
from discotok.data.stream import sample_rng
from discotok.data.synthetic import GradientMap, dead_leaves


def chroma(x: torch.Tensor) -> float:
    """Mean distance of each pixel's channels from their mean (0 for grey), for images in [-1, 1]."""
    return float((x - x.mean(-3, keepdim=True)).abs().mean())


def test_dead_leaves_is_a_pure_function_of_the_sample_seed_and_has_colour_at_every_scale():
    with sample_rng(0, 7):
        a = dead_leaves((48, 64))
    with sample_rng(0, 7):
        b = dead_leaves((48, 64))
    with sample_rng(0, 8):
        c = dead_leaves((48, 64))
    assert a.size == (64, 48) and a.mode == "RGB"
    assert a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()
    x = pil_to_tensor(a)
    assert chroma(x) > 0.1  # colour drawn from the whole RGB cube
    assert len(torch.unique(x.flatten(1), dim=1)[0]) > 20  # many shapes, softened edges


def test_gradient_map_colours_grey_images_and_leaves_colour_ones():
    grey = load_sample_photos(short_side=64, names=("camera.png",))[0]
    colour = load_sample_photos(short_side=64, names=("astronaut.png",))[0]
    assert chroma(pil_to_tensor(grey)) < 1e-6
    with sample_rng(0, 1):
        mapped = GradientMap(1.0)(grey)
    assert chroma(pil_to_tensor(mapped)) > 0.02
    assert mapped.size == grey.size
    assert GradientMap(1.0)(colour) is colour
    assert GradientMap(0.0)(grey) is grey


def test_the_default_training_stream_is_no_longer_mostly_grey():
    dm = ImageDataModule(
        crop_scale=(0.02, 1.0), synthetic=0.3,
        augment={"vflip": True, "colourize": 1.0, "hue": 0.5, "saturation": 0.6, "grayscale": 0.1},
    )
    dm.setup()
    x = torch.stack([dm.train_set[i] for i in range(128)])
    grey = (x - x.mean(1, keepdim=True)).abs().mean((1, 2, 3)) < 0.01
    assert grey.float().mean() < 0.2  # 55 % of crops were grey before colourize and the dead leaves
    assert torch.equal(x[5], dm.train_set[5])  # still a pure function of the index


def test_bad_synthetic_share_is_named():
    with pytest.raises(ValueError, match="data.synthetic"):
        RandomCrops([Image.new("RGB", (8, 8))], (8, 8), (0.5, 1.0), synthetic=1.5)
