"""Shared fixtures: tiny tokenizer configs for every quantizer, real photo crops."""

from __future__ import annotations

import pytest
import torch

from discotok.data.sample import load_sample_photos
from discotok.data.images import pil_to_tensor, resize_center_crop

LATENT = 8
TINY_QUANTIZERS = {
    "vq": {"name": "vq", "dim": LATENT, "codebook_size": 64, "code_dim": 4},
    "rvq": {"name": "rvq", "dim": LATENT, "depth": 3, "codebook_size": 32},
    "fsq": {"name": "fsq", "dim": LATENT, "levels": [5, 5, 5]},
    "lfq": {"name": "lfq", "dim": LATENT, "bits": 8, "groups": 2},
    "binary": {"name": "binary", "dim": LATENT, "bits": 8},
}


def tiny_tokenizer_config(quantizer: str = "fsq", image_size: int = 32) -> dict:
    """A grid tokenizer small enough to train a step in well under a second on CPU."""
    conv = {"latent_dim": LATENT, "channels": 8, "channel_mult": [1, 2, 2, 2], "num_res_blocks": 1}
    return {
        "encoder": {"name": "grid", **conv},
        "quantizer": dict(TINY_QUANTIZERS[quantizer]),
        "decoder": {"name": "grid", **conv},
        "image_size": [image_size, image_size],
    }


@pytest.fixture(scope="session")
def photo_batch() -> torch.Tensor:
    """Eight 32x32 crops of scikit-image's photos, in [-1, 1]."""
    crops = []
    for img in load_sample_photos(short_side=64)[:8]:
        crops.append(pil_to_tensor(resize_center_crop(img, (32, 32))))
    return torch.stack(crops)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
