"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (offline), as PNG folders.

``apt-get install dataset-fashion-mnist`` puts the four IDX files under
``/usr/share/datasets/fashion-mnist``. ``write_png_folder`` writes the first ``count`` images of
a split as RGB PNGs, zero-padded from 28x28 to ``size`` (32x32 by default, a size patch and
convolution tokenizers divide), ready for ``discotok train data=<folder>`` and ``discotok eval``.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
from PIL import Image

from discotok.atomic import atomic_path

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {"train": "train-images-idx3-ubyte.gz", "test": "t10k-images-idx3-ubyte.gz"}
IDX_UBYTE_3D = 0x0803


def fashion_mnist_dir() -> Path:
    """``$DISCOTOK_FASHION_MNIST`` or the Debian package's folder."""
    return Path(os.environ.get("DISCOTOK_FASHION_MNIST", DEFAULT_DIR))


def load_fashion_mnist(split: str = "train", folder: str | os.PathLike | None = None) -> np.ndarray:
    """The images of ``split`` (``train`` or ``test``) as uint8 (N, 28, 28)."""
    if split not in FILES:
        raise ValueError(f"split must be one of {sorted(FILES)}, got {split!r}")
    path = Path(folder or fashion_mnist_dir()) / FILES[split]
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: install Fashion-MNIST with `apt-get install dataset-fashion-mnist`")
    data = gzip.decompress(path.read_bytes())
    magic, count, rows, cols = np.frombuffer(data[:16], dtype=">u4")
    if magic != IDX_UBYTE_3D or len(data) != 16 + count * rows * cols:
        raise ValueError(f"{path} is not an IDX file of uint8 images")
    return np.frombuffer(data[16:], dtype=np.uint8).reshape(count, rows, cols)


def write_png_folder(out: str | os.PathLike, split: str = "train", count: int | None = None, size: int = 32) -> Path:
    """Write the first ``count`` images of ``split`` as ``out/NNNNN.png`` (RGB, black-padded to size x size).

    Files already there are kept (re-running is cheap); returns ``out``.
    """
    images = load_fashion_mnist(split)[:count]
    pad = size - images.shape[1]
    if pad < 0 or pad % 2:
        raise ValueError(f"size must be 28 plus an even padding, got {size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        path = out / f"{i:05d}.png"
        if not path.exists():
            padded = np.pad(image, pad // 2)
            with atomic_path(path) as tmp:
                Image.fromarray(np.stack([padded] * 3, axis=-1)).save(tmp, format="png")
    return out
