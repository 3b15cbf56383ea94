"""Fashion-MNIST from the Debian package as padded RGB PNG folders (the reproductions' data)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from PIL import Image

from discotok.data.fashion_mnist import FILES, fashion_mnist_dir, load_fashion_mnist, write_png_folder


def fake_idx(folder, images: np.ndarray) -> None:
    header = np.array([0x0803, *images.shape], dtype=">u4").tobytes()
    (folder / FILES["train"]).write_bytes(gzip.compress(header + images.astype(np.uint8).tobytes()))


def test_pngs_are_padded_rgb_copies_of_the_idx_images(tmp_path, monkeypatch):
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    fake_idx(tmp_path, images)
    monkeypatch.setenv("DISCOTOK_FASHION_MNIST", str(tmp_path))
    assert fashion_mnist_dir() == tmp_path
    assert np.array_equal(load_fashion_mnist("train"), images)
    out = write_png_folder(tmp_path / "png", "train", count=2)
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == ["00000.png", "00001.png"]
    pixels = np.asarray(Image.open(files[1]))
    assert pixels.shape == (32, 32, 3) and np.array_equal(pixels[2:30, 2:30, 0], images[1]) and pixels[:2].max() == 0


def test_missing_or_broken_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", tmp_path)
    (tmp_path / FILES["train"]).write_bytes(gzip.compress(b"\0" * 20))
    with pytest.raises(ValueError, match="not an IDX file"):
        load_fashion_mnist("train", tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("val", tmp_path)
