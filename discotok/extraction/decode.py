"""Ids -> files: ``discotok decode``. Every id is checked against the tokenizer before anything is decoded.

Images become one PNG per row. Audio ids become one wav per item at the tokenizer's rate:
items are decoded in zero-padded batches with their lengths (``Tokenizer.decode(ids,
lengths=...)``), each cut to its valid frames x hop, or to its original sample count when the
manifest records it.

A killed decode resumes: the same call keeps the files already written (see ``decode_ids``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from discotok.atomic import atomic_path
from discotok.extraction.encode import tokenizer_fingerprint
from discotok.extraction.lock import claim_output
from discotok.io import ExtractError, LoadedIds, load_ids
from discotok.nn.precision import resolve_precision
from discotok.tokenizers.tokenizer import Tokenizer

DECODE_RECORD = ".discotok-decode.json"


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


def decode_run_id(tokenizer: Tokenizer, loaded: LoadedIds, batch_size: int, sampler: dict, names: list[str]) -> str:
    """sha256 over everything that decides a decode's files: tokenizer, ids, manifest, batching, sampler, names."""
    digest = hashlib.sha256(tokenizer_fingerprint(tokenizer).encode())
    digest.update(f"{loaded.ids.dtype}:{loaded.ids.shape}".encode())
    digest.update(np.ascontiguousarray(loaded.ids).tobytes())
    digest.update(json.dumps([loaded.manifest, batch_size, sampler, names], sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _recorded_run(path: Path) -> str | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return record.get("run") if isinstance(record, dict) else None


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

    A conditioned decoder (TA-TiTok's) is refused: the ids files hold no condition.
    All ids are validated first; each output file is written atomically. Returns the paths in row order.
    Resumable: while a run is in progress ``.discotok-decode.json`` in ``output_dir`` records it, so
    the same call after a kill keeps the files already written (whole batches are skipped, and
    the rest decode as in one run) and removes the killed run's temporaries; the record goes
    when the run finishes. ``output_dir`` is locked against other runs (``.discotok.lock``).
    ``sampler`` (``timesteps``, ``guidance_scale``, ``seed``) goes to a generative decoder's
    ``decode``; batch i samples with ``seed + i``, so a fixed seed and batch size give the same files.
    ``precision``: ``fp32`` (default), ``bf16`` or ``auto`` (``Tokenizer.decode``).
    """
    if batch_size < 1:
        raise ExtractError(f"batch_size must be >= 1, got {batch_size}")
    if tokenizer.decoder.conditioned:
        raise ExtractError(f"this tokenizer's decoder needs {tokenizer.decoder.condition_description}, which ids files "
                           "do not hold: decode with Tokenizer.decode(ids, condition=...) in Python")
    try:
        resolve_precision(precision, "cpu")
    except ValueError as err:
        raise ExtractError(f"--precision: {err}") from err
    loaded = load_ids(ids_path_or_dir)
    writer = tokenizer.modality.writer()
    sampler = {**(sampler or {}), "precision": precision}  # batch_sampler passes every key on to decode
    decode_batch = tokenizer.modality.batch_decoder(tokenizer, loaded, batch_size, sampler)
    num_rows = loaded.ids.shape[0]
    output_dir = Path(output_dir)
    names = output_names(loaded.manifest, num_rows, writer.suffix)
    paths = [output_dir / name for name in names]
    run = decode_run_id(tokenizer, loaded, batch_size, sampler, names)
    ours = {*names, DECODE_RECORD}
    with claim_output(output_dir, "discotok decode", ours.__contains__):
        record = output_dir / DECODE_RECORD
        resumed = _recorded_run(record) == run
        with atomic_path(record) as tmp:
            tmp.write_text(json.dumps({"format": "discotok.decode", "run": run}) + "\n", encoding="utf-8")
        bar = tqdm(total=num_rows, desc="decode", unit="item", file=sys.stderr, disable=not progress)
        with bar, torch.inference_mode():
            for i, start in enumerate(range(0, num_rows, batch_size)):
                rows = range(start, min(start + batch_size, num_rows))
                todo = [r for r in rows if not (resumed and paths[r].is_file())]
                if todo:
                    decoded = decode_batch(i)
                    for r in todo:
                        writer.write(paths[r], decoded[r - start])
                bar.update(len(rows))
        record.unlink()
    return paths
