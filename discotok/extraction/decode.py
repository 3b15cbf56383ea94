"""Ids -> files: ``discotok decode``. Every id is checked against the tokenizer before anything is decoded.

Images become one PNG per row. Audio ids become one wav per item at the tokenizer's rate:
items are decoded in zero-padded batches with their lengths (``Tokenizer.decode(ids,
lengths=...)``), each cut to its valid frames x hop, or to its original sample count when the
manifest records it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import torch
from torch import Tensor
from tqdm import tqdm

from discotok.atomic import atomic_path
from discotok.data.audio import save_audio
from discotok.data.images import tensor_to_pil
from discotok.extraction.checks import check_frame_ids, check_ids_array
from discotok.io import ExtractError, LoadedIds, load_ids
from discotok.nn.precision import resolve_precision
from discotok.tokenizers.tokenizer import Tokenizer


class ImageWriter:
    """Writes one decoded image (3, H, W) in [-1, 1] as ``<stem>.png``, atomically."""

    suffix = ".png"

    def write(self, path: Path, item: Tensor) -> None:
        with atomic_path(path) as tmp:
            tensor_to_pil(item).save(tmp, format="PNG")


class AudioWriter:
    """Writes one decoded waveform (C, T) in [-1, 1] as ``<stem>.wav`` (16-bit PCM) at ``sample_rate``, atomically."""

    suffix = ".wav"

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate

    def write(self, path: Path, item: Tensor) -> None:
        save_audio(path, item, self.sample_rate)


def output_names(manifest: dict | None, num_rows: int, suffix: str) -> list[str]:
    """``0003_astronaut.png`` from the manifest's sources (unique by the row prefix), else ``0003.png``."""
    width = max(4, len(str(num_rows - 1)))
    stems = {}
    for item in (manifest or {}).get("items", []):
        stem = re.sub(r"[^\w.-]+", "_", PurePosixPath(item["source"]).stem)[:80].strip("._")
        stems[item["row"]] = f"_{stem}" if stem else ""
    return [f"{row:0{width}d}{stems.get(row, '')}{suffix}" for row in range(num_rows)]


def batch_sampler(sampler: dict, index: int) -> dict:
    """The sampler arguments of batch ``index``: its seed is ``seed + index`` (the tokenizer refuses them
    for deterministic decoders)."""
    return {**sampler, "seed": sampler["seed"] + index} if sampler.get("seed") is not None else sampler


def _image_batches(tokenizer: Tokenizer, loaded: LoadedIds, batch_size: int, sampler: dict) -> Iterator[list[Tensor]]:
    """Checks every id, then yields decoded images batch by batch."""
    ids, layout = check_ids_array(tokenizer, *loaded)
    image_size = (loaded.manifest or {}).get("image_size")  # 1-D decoders: the size the images were encoded at

    def batches() -> Iterator[list[Tensor]]:
        for i, start in enumerate(range(0, ids.shape[0], batch_size)):
            yield list(tokenizer.decode(ids[start : start + batch_size], layout, image_size=image_size,
                                        **batch_sampler(sampler, i)))

    return batches()


def _audio_batches(tokenizer: Tokenizer, loaded: LoadedIds, batch_size: int, sampler: dict) -> Iterator[list[Tensor]]:
    """Checks every id, then yields decoded waveforms batch by batch, each cut to its samples (else frames x hop)."""
    ids, frames, samples = check_frame_ids(tokenizer, loaded)
    lengths = frames * tokenizer.hop_length if samples is None else samples

    def batches() -> Iterator[list[Tensor]]:
        for i, start in enumerate(range(0, ids.shape[0], batch_size)):
            stop = min(start + batch_size, ids.shape[0])
            width = int(frames[start:stop].max())
            waves = tokenizer.decode(ids[start:stop, :width], lengths=lengths[start:stop], **batch_sampler(sampler, i))
            yield [wave[:, :n] for wave, n in zip(waves, lengths[start:stop].tolist())]

    return batches()


def decode_ids(
    tokenizer: Tokenizer,
    ids_path_or_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    batch_size: int = 16,
    progress: bool = True,
    sampler: dict | None = None,
    precision: str = "fp32",
) -> list[Path]:
    """Decode the ids of an output folder of ``discotok encode`` (any format and manifest version)
    or of one ids file (``.npy``, ``.safetensors``, ``.tar``) to one file per row: a PNG per
    image, a wav per audio item (at the tokenizer's rate, cut to the item's length).

    All ids are validated first; each output file is written atomically. Returns the paths in row order.
    ``sampler`` (``timesteps``, ``guidance_scale``, ``seed``) goes to a generative decoder's
    ``decode``; batch i samples with ``seed + i``, so a fixed seed and batch size give the same files.
    ``precision``: ``fp32`` (default), ``bf16`` or ``auto`` (``Tokenizer.decode``).
    """
    if batch_size < 1:
        raise ExtractError(f"batch_size must be >= 1, got {batch_size}")
    try:
        resolve_precision(precision, "cpu")
    except ValueError as err:
        raise ExtractError(f"--precision: {err}") from err
    loaded = load_ids(ids_path_or_dir)
    audio = tokenizer.modality == "audio"
    writer = AudioWriter(tokenizer.sample_rate) if audio else ImageWriter()
    decode_kwargs = {**(sampler or {}), "precision": precision}  # batch_sampler passes every key on to decode
    batches = (_audio_batches if audio else _image_batches)(tokenizer, loaded, batch_size, decode_kwargs)
    num_rows = loaded.ids.shape[0]
    output_dir = Path(output_dir)
    names = output_names(loaded.manifest, num_rows, writer.suffix)
    output_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    bar = tqdm(total=num_rows, desc="decode", unit="item", file=sys.stderr, disable=not progress)
    with bar, torch.inference_mode():
        for decoded in batches:
            for item in decoded:
                path = output_dir / names[len(written)]
                writer.write(path, item)
                written.append(path)
            bar.update(len(decoded))
    return written
