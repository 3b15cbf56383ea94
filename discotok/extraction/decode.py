"""Ids -> files: ``discotok decode``. Every id is checked against the tokenizer before anything is decoded."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path, PurePosixPath

import torch
from torch import Tensor
from tqdm import tqdm

from discotok.atomic import atomic_path
from discotok.data.images import tensor_to_pil
from discotok.io import ExtractError, check_ids_array, load_ids
from discotok.tokenizers.tokenizer import Tokenizer


class ImageWriter:
    """Writes one decoded image (3, H, W) in [-1, 1] as ``<stem>.png``, atomically."""

    suffix = ".png"

    def write(self, path: Path, item: Tensor) -> None:
        with atomic_path(path) as tmp:
            tensor_to_pil(item).save(tmp, format="PNG")


def output_names(manifest: dict | None, num_rows: int, suffix: str) -> list[str]:
    """``0003_astronaut.png`` from the manifest's sources (unique by the row prefix), else ``0003.png``."""
    width = max(4, len(str(num_rows - 1)))
    stems = {}
    for item in (manifest or {}).get("items", []):
        stem = re.sub(r"[^\w.-]+", "_", PurePosixPath(item["source"]).stem)[:80].strip("._")
        stems[item["row"]] = f"_{stem}" if stem else ""
    return [f"{row:0{width}d}{stems.get(row, '')}{suffix}" for row in range(num_rows)]


def decode_ids(
    tokenizer: Tokenizer,
    ids_path_or_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    batch_size: int = 16,
    progress: bool = True,
) -> list[Path]:
    """Decode the ids of an output folder of ``discotok encode`` (any format and manifest version)
    or of one ids file (``.npy``, ``.safetensors``, ``.tar``) to one file per row.

    All ids are validated first; each output file is written atomically. Returns the paths in row order.
    """
    if batch_size < 1:
        raise ExtractError(f"batch_size must be >= 1, got {batch_size}")
    modality = tokenizer.config.get("modality", "image")
    if modality != "image":
        raise ExtractError(f"decoding writes images only so far; this tokenizer's modality is {modality!r}")
    arr, manifest, ids_path = load_ids(ids_path_or_dir)
    ids, layout = check_ids_array(tokenizer, arr, manifest, ids_path)
    image_size = (manifest or {}).get("image_size")  # 1-D decoders: the size the images were encoded at
    writer = ImageWriter()
    output_dir = Path(output_dir)
    names = output_names(manifest, ids.shape[0], writer.suffix)
    output_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    bar = tqdm(total=ids.shape[0], desc="decode", unit="item", file=sys.stderr, disable=not progress)
    with bar, torch.inference_mode():
        for start in range(0, ids.shape[0], batch_size):
            decoded = tokenizer.decode(ids[start : start + batch_size], layout, image_size=image_size)
            for row, item in enumerate(decoded, start):
                writer.write(output_dir / names[row], item)
                written.append(output_dir / names[row])
            bar.update(len(decoded))
    return written
