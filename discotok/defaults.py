"""Defaults and limits shared by the library and the command line, importable without torch, so that every
``discotok <command> --help`` answers at once."""

from __future__ import annotations

import os
from pathlib import Path

PRECISIONS = ("fp32", "bf16", "int8", "auto")  # inference precisions (discotok.nn.precision)
FORMATS = ("npy", "safetensors", "wds")  # ids file formats (discotok.io)
DEFAULT_MAX_PIXELS = 1 << 26  # images larger than this are refused before decoding (8192 x 8192)
DEFAULT_MAX_DURATION = 600.0  # audio files longer than this many seconds are refused from their header
FIT_METHODS = ("lloyd", "quantile", "uniform")  # how the scalar quantizer is fitted (discotok.quantizers.scalar)
DEFAULT_SAMPLE_CROPS = 1024  # quantize-after on sample_photos: random crops fitted on
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # the FID network's weights (torch-fidelity)


def default_inception_path() -> Path:
    """``$DISCOTOK_INCEPTION_WEIGHTS``, else ``~/.cache/discotok/weights-inception-2015-12-05-6726825d.pth``."""
    if os.environ.get("DISCOTOK_INCEPTION_WEIGHTS"):
        return Path(os.environ["DISCOTOK_INCEPTION_WEIGHTS"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "discotok" / INCEPTION_FILE


def config_dir() -> str:
    """The ``configs/`` tree: beside the package in a checkout, inside it in an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "configs", here / "configs"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"discotok's configs/ folder was not found beside {here}")
