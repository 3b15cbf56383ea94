"""Shared pieces of the small-scale reproductions (``repro_1d_tokens.py``, ``repro_flow_decoder.py``,
``repro_perturbation.py``, ``repro_post_training_quantization.py``): Fashion-MNIST folders, ``discotok train`` runs, held-out
images and a Fréchet distance on a randomly initialised FID InceptionV3.

Fashion-MNIST comes from the Debian package (``apt-get install dataset-fashion-mnist``), padded to
32x32 RGB PNGs: 20,000 training images (``data=<folder>``, whole images, flips) and the first
images of the test split held out for scoring.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

from discotok.data.fashion_mnist import write_png_folder
from discotok.data.images import load_image, pil_to_tensor
from discotok.metrics.fid import FEATURE_DIM, FeatureStats, features_of, frechet_distance_of, load_inception
from discotok.metrics.fid import random_inception_weights

TRAIN_IMAGES = 20_000
COMMON = ["data.image_size=[32,32]", "data.batch_size=16", "trainer.enable_progress_bar=false"]
FOLDER = ["data.crop_scale=[1.0,1.0]", "data.val_samples=16"]  # whole Fashion-MNIST images


def fashion_mnist(out: Path, test_images: int) -> tuple[Path, Path]:
    """The training and test folders under ``out`` (written once)."""
    train = write_png_folder(out / "fashion_mnist" / "train", "train", TRAIN_IMAGES)
    test = write_png_folder(out / "fashion_mnist" / "test", "test", test_images)
    return train, test


def train(name: str, out: Path, steps: int, data: Path | None, *overrides: str) -> tuple[Path, float]:
    """``discotok train`` for ``steps`` steps on the folder ``data`` (whole images; None: random crops of
    the sample photos); the tokenizer directory and wall seconds. A run already finished under
    ``out/name`` is reused."""
    run_dir = out / name
    if (run_dir / "tokenizer" / "model.safetensors").is_file():
        print(f"{name}: reusing {run_dir}", file=sys.stderr)
        return run_dir / "tokenizer", float("nan")
    data_args = [f"data={data}", *FOLDER] if data is not None else []
    args = [sys.executable, "-m", "discotok.cli", "train", *data_args, *COMMON, *overrides,
            f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}", f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    env = {**os.environ, "HYDRA_FULL_ERROR": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run(args, check=True, env=env, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    print(f"{name}: trained {steps} steps in {seconds:.0f} s", file=sys.stderr)
    return run_dir / "tokenizer", seconds


def held_out(folder: Path, count: int) -> Tensor:
    """The first ``count`` images of ``folder`` (sorted), (count, 3, 32, 32) in [-1, 1]."""
    files = sorted(folder.glob("*.png"))[:count]
    return torch.stack([pil_to_tensor(load_image(p)) for p in files])


class RandomFeatureFID:
    """Fréchet distance on a RANDOMLY INITIALISED FID InceptionV3 (no real weights offline):
    an FID-style figure that compares runs on the same images, never a published FID."""

    def __init__(self, out: Path, reference: Tensor, batch_size: int = 50) -> None:
        path = out / "random-inception.safetensors"
        if not path.is_file():
            random_inception_weights(path)
        self.net = load_inception(path)
        self.batch_size = batch_size
        self.reference = self.stats(reference)

    def stats(self, images: Tensor) -> FeatureStats:
        stats = FeatureStats(FEATURE_DIM)
        for chunk in images.split(self.batch_size):
            stats.update(features_of(self.net, chunk))
        return stats

    def __call__(self, images: Tensor) -> float:
        return frechet_distance_of(self.reference, self.stats(images))
