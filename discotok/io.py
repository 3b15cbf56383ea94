"""The files of ``discotok encode`` / ``discotok decode``: ids shards and ``manifest.json``.

An output folder of ``discotok encode`` holds ``manifest.json`` and the ids in shards
``ids-00000.<ext>``, ``ids-00001.<ext>``, ... (each with a small ``ids-00000.json`` record
used to resume a killed run). Shard formats, rows in item order:

* ``npy``: one int64 array (rows, N) or (rows, N, depth);
* ``safetensors``: the same array as tensor ``ids``, the item sources in the metadata;
* ``wds``: a WebDataset tar with one sample per item, its ids as ``<key>.ids.npy`` and
  ``<key>.json`` = ``{"source", "row"}``; the key is the source with dots replaced by ``_``
  (WebDataset splits a sample key at the first dot of the file name).

Manifest version 2 lists the shards; version 1 (a single ``ids.npy``, written by earlier
releases) is still read. Readers never unpickle. Writers live in ``discotok.extraction``,
each file through ``discotok.atomic.atomic_path`` (temporary name, then ``os.replace``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch import Tensor

from discotok.tokenizers.layout import Layout
from discotok.tokenizers.tokenizer import Tokenizer

IDS_NAME = "ids.npy"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "discotok.ids"
MANIFEST_VERSION = 2
READABLE_VERSIONS = (1, 2)
FORMATS = ("npy", "safetensors", "wds")
SUFFIX = {"npy": ".npy", "safetensors": ".safetensors", "wds": ".tar"}


class ExtractError(ValueError):
    """Encoding or decoding cannot proceed; ``skipped`` lists inputs rejected on the way."""

    def __init__(self, message: str, skipped: Sequence[dict] = ()) -> None:
        super().__init__(message)
        self.skipped = list(skipped)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def format_of(path: Path) -> str:
    """The shard format a file name's suffix stands for."""
    for name, suffix in SUFFIX.items():
        if path.name.endswith(suffix):
            return name
    raise ExtractError(f"{path}: not an ids file (expected {', '.join(SUFFIX.values())})")


def wds_key(source: str) -> str:
    """A WebDataset sample key for ``source``: no dots (they start the extension)."""
    return source.replace(".", "_")


def write_shard(fmt: str, path: Path, ids: np.ndarray, sources: list[str], first_row: int = 0) -> None:
    """Write one shard's ids (rows in ``sources`` order) to ``path`` (a temporary name)."""
    if fmt == "npy":
        with open(path, "wb") as f:
            np.save(f, ids, allow_pickle=False)
    elif fmt == "safetensors":
        from safetensors.numpy import save_file

        save_file({"ids": np.ascontiguousarray(ids)}, str(path), metadata={"sources": json.dumps(sources)})
    elif fmt == "wds":
        import webdataset as wds

        with open(path, "wb") as f, wds.TarWriter(f) as sink:
            for row, (source, row_ids) in enumerate(zip(sources, ids, strict=True), first_row):
                sink.write({"__key__": wds_key(source), "ids.npy": row_ids, "json": {"source": source, "row": row}})
    else:
        raise ExtractError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _npy(data: bytes | Path, where: Path) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(data) if isinstance(data, bytes) else data, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ExtractError(f"{where}: not a readable .npy array ({err})") from err
    if not isinstance(arr, np.ndarray):
        raise ExtractError(f"{where}: expected a single .npy array, got an .npz archive")
    return arr


def read_shard(path: Path) -> np.ndarray:
    """The ids array of one ids file (``.npy``, ``.safetensors`` or WebDataset ``.tar``)."""
    fmt = format_of(path)
    if not path.is_file():
        raise ExtractError(f"ids file {str(path)!r} does not exist")
    if fmt == "npy":
        return _npy(path, path)
    if fmt == "safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise ExtractError(f"{path}: not a readable safetensors file ({err})") from err
        if "ids" not in tensors:
            raise ExtractError(f"{path}: holds no tensor named 'ids' (has {sorted(tensors)})")
        return tensors["ids"]
    rows = []
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".ids.npy"):
                    rows.append(_npy(tar.extractfile(member).read(), path))
    except tarfile.TarError as err:
        raise ExtractError(f"{path}: not a readable tar shard ({err})") from err
    if not rows or len({r.shape for r in rows}) != 1:
        raise ExtractError(f"{path}: expected '*.ids.npy' samples of one shape, got {sorted({r.shape for r in rows})}")
    return np.stack(rows)


def _plain_name(manifest_path: Path, name: object, what: str) -> str:
    if not isinstance(name, str) or name in ("", ".", "..") or PurePosixPath(name).name != name:
        raise ExtractError(f"{manifest_path}: {what} must be a file name in the same folder, got {name!r}")
    return name


def read_manifest(path: Path) -> dict:
    """Load and sanity-check a manifest written by ``discotok encode`` (version 1 or 2)."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ExtractError(f"{path}: not a readable manifest ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ExtractError(f"{path}: not a discotok ids manifest (format should be {MANIFEST_FORMAT!r})")
    if manifest.get("version") not in READABLE_VERSIONS:
        raise ExtractError(f"{path}: manifest version {manifest.get('version')!r} is not supported")
    try:
        if manifest["version"] == 1:
            shards = [{"file": manifest.get("ids_file"), "rows": manifest["ids_shape"][0], "first_row": 0}]
        else:
            shards = [{"file": s["file"], "rows": int(s["rows"]), "first_row": int(s["first_row"]),
                       "sha256": s.get("sha256")} for s in manifest["shards"]]
        for shard in shards:
            _plain_name(path, shard["file"], "every ids file")
        manifest["shards"] = shards
        Layout.from_dict(manifest["layout"])
        manifest["items"] = [{"row": int(i["row"]), "source": str(i["source"])} for i in manifest["items"]]
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise ExtractError(f"{path}: malformed 'shards', 'layout' or 'items' ({err!r})") from err
    return manifest


def _shard_view(manifest: dict, shard: dict) -> dict:
    """The manifest narrowed to one shard: its rows renumbered from 0."""
    first, rows = shard["first_row"], shard["rows"]
    items = [{"row": i["row"] - first, "source": i["source"]} for i in manifest["items"] if first <= i["row"] < first + rows]
    return {**manifest, "shards": [{**shard, "first_row": 0}], "items": items,
            "ids_shape": [rows, *manifest["ids_shape"][1:]]}


def load_ids(ids_path_or_dir: str | os.PathLike) -> tuple[np.ndarray, dict | None, Path]:
    """Read ids and their manifest (if any): an output folder of ``discotok encode`` (all shards,
    in row order), or one ids file (its manifest is used when one beside it lists the file)."""
    path = Path(ids_path_or_dir)
    if path.is_dir():
        if not (path / MANIFEST_NAME).is_file():
            if (path / IDS_NAME).is_file():
                return read_shard(path / IDS_NAME), None, path / IDS_NAME
            raise ExtractError(f"{str(path)!r} holds no {MANIFEST_NAME} (nor {IDS_NAME})")
        manifest = read_manifest(path / MANIFEST_NAME)
        parts = []
        for shard in manifest["shards"]:
            shard_path = path / shard["file"]
            if not shard_path.is_file():
                raise ExtractError(f"ids file {str(shard_path)!r} listed in {path / MANIFEST_NAME} does not exist")
            if shard.get("sha256") and sha256_file(shard_path) != shard["sha256"]:
                raise ExtractError(f"{shard_path}: contents changed since {MANIFEST_NAME} was written (sha256 differs)")
            parts.append(read_shard(shard_path))
        if len({p.shape[1:] for p in parts}) > 1:
            raise ExtractError(f"{path}: shards hold ids of different shapes {sorted({p.shape for p in parts})}")
        return np.concatenate(parts), manifest, path / MANIFEST_NAME
    arr = read_shard(path)
    beside = path.parent / MANIFEST_NAME
    manifest = read_manifest(beside) if beside.is_file() else None
    shard = next((s for s in (manifest or {"shards": []})["shards"] if s["file"] == path.name), None)
    return arr, (_shard_view(manifest, shard) if shard else None), path


def check_ids_array(
    tokenizer: Tokenizer, arr: np.ndarray, manifest: dict | None, source: Path
) -> tuple[Tensor, Layout]:
    """Validate ids for ``tokenizer`` (dtype, shape, depth, range, token count) without decoding.

    Returns the ids as an int64 tensor and the layout to decode them with; raises
    ``ExtractError`` naming ``source`` and the expected shape or range otherwise.
    """

    def fail(problem: str) -> ExtractError:
        return ExtractError(f"{source}: {problem}")

    if arr.dtype.kind not in "iu":
        raise fail(f"ids must have an integer dtype, got {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise fail(f"ids must lie in [0, {tokenizer.codebook_size - 1}]; got values up to {int(arr.max())}")
    ids = torch.from_numpy(arr.astype(np.int64))
    try:
        tokenizer.quantizer.check_ids(ids)
    except ValueError as err:
        raise fail(str(err).replace("(B, N", "(num_items, N")) from None
    if ids.shape[0] == 0:
        raise fail("holds no rows")
    if manifest is None:
        try:
            layout = tokenizer.default_layout(ids.shape[1])
        except ValueError as err:
            raise fail(str(err)) from None
    else:
        if list(ids.shape) != list(manifest.get("ids_shape", [])):
            raise fail(f"shape {tuple(ids.shape)} does not match the manifest's ids_shape {manifest.get('ids_shape')}")
        if manifest.get("codebook_size") != tokenizer.codebook_size:
            raise fail(
                f"ids were made with codebook size {manifest.get('codebook_size')}, "
                f"this tokenizer has {tokenizer.codebook_size}"
            )
        layout = Layout.from_dict(manifest["layout"])
    if layout.kind == "sequence" and not 1 <= ids.shape[1] <= layout.num_tokens:
        raise fail(f"rows hold {ids.shape[1]} tokens; the sequence layout takes a prefix of 1..{layout.num_tokens}")
    if layout.kind != "sequence" and layout.num_tokens != ids.shape[1]:
        raise fail(f"rows hold {ids.shape[1]} tokens; the {layout.kind} layout {layout.shape} has {layout.num_tokens}")
    return ids, layout
