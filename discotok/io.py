"""The files of ``discotok encode`` / ``discotok decode``: ids shards and ``manifest.json``.

An output folder of ``discotok encode`` holds ``manifest.json`` and the ids in shards
``ids-00000.<ext>``, ``ids-00001.<ext>``, ... (each with a small ``ids-00000.json`` record
used to resume a killed run). Shard formats, rows in item order:

* ``npy``: one int64 array (rows, N) or (rows, N, depth);
* ``safetensors``: the same array as tensor ``ids``, the item sources in the metadata;
* ``wds``: a WebDataset tar with one sample per item, its ids as ``<key>.ids.npy`` and
  ``<key>.json`` = ``{"source", "row"}``; the key is the source with dots replaced by ``_``
  (WebDataset splits a sample key at the first dot of the file name).

Variable-length items (audio: one token position per hop, so clips of different lengths
have different frame counts) keep each item's valid frames only: ``npy`` and
``safetensors`` rows are padded with ``PAD_ID`` (-1, never an id) to the shard's longest item,
``wds`` samples hold each item's ids unpadded. The shard records and the manifest give every
item's ``frames`` (and ``samples``, its length at the model's rate); ``load_ids`` pads all
shards to the longest item and ``LoadedIds.frames`` / ``.samples`` give the per-item lengths.

Manifest version 2 lists the shards (an audio manifest adds ``modality: "audio"``,
``pad_id`` and per-item lengths, and for a segmenting tokenizer each item's loudness ``scales``; image
manifests are as before); version 1 (a single
``ids.npy``, written by earlier releases) is still read. Readers never unpickle. Writers live
in ``discotok.extraction``, each file through ``discotok.atomic.atomic_path`` (temporary
name, then ``os.replace``).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import BinaryIO, NamedTuple

import numpy as np

from discotok.defaults import FORMATS
from discotok.layout import Layout

IDS_NAME = "ids.npy"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "discotok.ids"
MANIFEST_VERSION = 2
READABLE_VERSIONS = (1, 2)
SUFFIX = {"npy": ".npy", "safetensors": ".safetensors", "wds": ".tar"}
PAD_ID = -1
ITEM_LENGTHS = ("frames", "samples")
ITEM_SIDE = ("scales",)  # per-item side information decoding needs (audio segments' loudness scales)
NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


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


def pad_rows(rows: Sequence[np.ndarray], width: int | None = None) -> np.ndarray:
    """Rows of different lengths (first axis) stacked into one array, padded with ``PAD_ID`` to ``width``
    (default: the longest row)."""
    width = max(len(r) for r in rows) if width is None else width
    dtype = np.result_type(*(r.dtype for r in rows), np.int8)
    out = np.full((len(rows), width, *rows[0].shape[1:]), PAD_ID, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def write_shard(
    fmt: str, path: Path, ids: np.ndarray, sources: list[str], first_row: int = 0, infos: list[dict] | None = None
) -> None:
    """Write one shard's ids (rows in ``sources`` order) to ``path`` (a temporary name).

    ``infos`` (variable-length items): per row its ``frames`` and what else the manifest records;
    ``ids`` rows are then padded with ``PAD_ID`` past each item's frames, and ``wds`` samples hold
    the valid frames only.
    """
    infos = infos or [{}] * len(sources)
    if fmt == "npy":
        with open(path, "wb") as f:
            np.save(f, ids, allow_pickle=False)
    elif fmt == "safetensors":
        from safetensors.numpy import save_file

        metadata = {"sources": json.dumps(sources)}
        if any(infos):
            metadata |= {"items": json.dumps(infos), "pad_id": str(PAD_ID)}
        save_file({"ids": np.ascontiguousarray(ids)}, str(path), metadata=metadata)
    elif fmt == "wds":
        import webdataset as wds

        with open(path, "wb") as f, wds.TarWriter(f) as sink:
            for row, (source, row_ids, info) in enumerate(zip(sources, ids, infos, strict=True), first_row):
                valid = row_ids[: info["frames"]] if "frames" in info else row_ids
                sink.write({"__key__": wds_key(source), "ids.npy": valid, "json": {"source": source, "row": row, **info}})
    else:
        raise ExtractError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")


def check_npy_header(f: BinaryIO, where: Path) -> None:
    """Refuse an ``.npy`` stream whose header declares more data than the stream holds (a 1 KB file
    can declare terabytes), before ``np.load`` allocates it; leaves ``f`` at its start."""
    size = f.seek(0, os.SEEK_END)
    f.seek(0)
    try:
        version = np.lib.format.read_magic(f)
        if version not in NPY_HEADER_READERS:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, _, dtype = NPY_HEADER_READERS[version](f)
    except (ValueError, EOFError) as err:
        raise ExtractError(f"{where}: not a readable .npy array ({err})") from err
    needed = math.prod(shape) * dtype.itemsize
    if needed > size - f.tell():
        raise ExtractError(
            f"{where}: the .npy header declares {dtype} ids of shape {tuple(shape)} ({needed} bytes) but the file "
            f"holds {size - f.tell()} bytes of data (truncated or forged)"
        )
    f.seek(0)


def _npy(data: bytes | Path, where: Path) -> np.ndarray:
    try:
        with io.BytesIO(data) if isinstance(data, bytes) else open(data, "rb") as f:
            check_npy_header(f, where)
            arr = np.load(f, allow_pickle=False)
    except ExtractError:
        raise
    except (OSError, ValueError, EOFError) as err:
        raise ExtractError(f"{where}: not a readable .npy array ({err})") from err
    if not isinstance(arr, np.ndarray):
        raise ExtractError(f"{where}: expected a single .npy array, got an .npz archive")
    return arr


def as_int64(arr: np.ndarray, where: Path) -> np.ndarray:
    """Ids of any integer dtype as int64; other dtypes, and unsigned ids beyond int64, refused naming ``where``."""
    if arr.dtype.kind not in "iu":
        raise ExtractError(f"{where}: ids must have an integer dtype, got {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ExtractError(f"{where}: holds {arr.dtype} ids up to {int(arr.max())}, which do not fit int64 (no codebook "
                           "is that large)")
    return arr.astype(np.int64, copy=False)


def read_shard(path: Path) -> np.ndarray:
    """The ids array of one ids file (``.npy``, ``.safetensors`` or WebDataset ``.tar``) as int64, whatever
    integer dtype the file holds (so shards of different dtypes concatenate as ids)."""
    return as_int64(_read_shard(path), path)


def _read_shard(path: Path) -> np.ndarray:
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
                    rows.append(as_int64(_npy(tar.extractfile(member).read(), path), path))
    except tarfile.TarError as err:
        raise ExtractError(f"{path}: not a readable tar shard ({err})") from err
    if not rows or len({r.shape[1:] for r in rows}) != 1 or min(r.ndim for r in rows) < 1:
        raise ExtractError(f"{path}: expected '*.ids.npy' samples of one shape, got {sorted({r.shape for r in rows})}")
    if len({len(r) for r in rows}) == 1:
        return np.stack(rows)
    return pad_rows(rows)  # variable-length samples (audio): padded with PAD_ID to the longest


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
        manifest["items"] = [
            {"row": int(i["row"]), "source": str(i["source"]), **{k: int(i[k]) for k in ITEM_LENGTHS if k in i},
             **{k: [float(v) for v in i[k]] for k in ITEM_SIDE if k in i}}
            for i in manifest["items"]
        ]
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise ExtractError(f"{path}: malformed 'shards', 'layout' or 'items' ({err!r})") from err
    return manifest


def _shard_view(manifest: dict, shard: dict) -> dict:
    """The manifest narrowed to one shard: its rows renumbered from 0."""
    first, rows = shard["first_row"], shard["rows"]
    items = [{**i, "row": i["row"] - first} for i in manifest["items"] if first <= i["row"] < first + rows]
    shape = [rows, *manifest["ids_shape"][1:]]
    if is_variable(manifest) and items and all("frames" in i for i in items):
        shape[1] = max(i["frames"] for i in items)  # the shard's rows are padded to its own longest item
    return {**manifest, "shards": [{**shard, "first_row": 0}], "items": items, "ids_shape": shape}


def is_variable(manifest: dict | None) -> bool:
    """Whether a manifest describes variable-length items (frames layout: audio)."""
    return bool(manifest) and manifest.get("layout", {}).get("kind") == "frames"


def item_lengths(manifest: dict | None, key: str, rows: int) -> np.ndarray | None:
    """Per-row ``key`` (``frames`` or ``samples``) from the manifest's items, or None when not recorded."""
    items = (manifest or {}).get("items") or []
    if len(items) != rows or not all(key in i for i in items):
        return None
    lengths = np.zeros(rows, dtype=np.int64)
    for item in items:
        lengths[item["row"]] = item[key]
    return lengths


def frames_from_padding(ids: np.ndarray) -> np.ndarray:
    """Per-row valid frames of padded ids (B, N[, depth]): the position after the last frame that is not ``PAD_ID``."""
    valid = (ids != PAD_ID).reshape(ids.shape[0], ids.shape[1], -1).any(axis=2)
    last = valid.shape[1] - np.argmax(valid[:, ::-1], axis=1)
    return np.where(valid.any(axis=1), last, 0).astype(np.int64)


class LoadedIds(NamedTuple):
    """``ids, manifest, path = load_ids(...)``; variable-length (audio) ids also give per-item lengths."""

    ids: np.ndarray
    manifest: dict | None
    path: Path

    @property
    def frames(self) -> np.ndarray | None:
        """Valid frames per row (audio): from the manifest, else from the ``PAD_ID`` padding; None for
        fixed-length (image) ids."""
        frames = item_lengths(self.manifest, "frames", self.ids.shape[0])
        if frames is None and not self.manifest and self.ids.ndim >= 2 and (self.ids == PAD_ID).any():
            frames = frames_from_padding(self.ids)
        return frames

    @property
    def samples(self) -> np.ndarray | None:
        """Audio: each item's length in samples at the model's rate, when the manifest records it."""
        return item_lengths(self.manifest, "samples", self.ids.shape[0])

    def item_values(self, key: str) -> list[list[float]] | None:
        """Per row the side information ``key`` the manifest records beside the ids (``scales``: audio segments'
        loudness scales), or None when some row has none."""
        items = (self.manifest or {}).get("items") or []
        if len(items) != self.ids.shape[0] or not all(key in i for i in items):
            return None
        return [i[key] for i in sorted(items, key=lambda i: i["row"])]


def load_ids(ids_path_or_dir: str | os.PathLike) -> LoadedIds:
    """Read ids and their manifest (if any): an output folder of ``discotok encode`` (all shards,
    in row order), or one ids file (its manifest is used when one beside it lists the file).

    Variable-length (audio) ids come padded with ``PAD_ID`` to the longest item;
    ``load_ids(...).frames`` gives each row's valid frames.
    """
    path = Path(ids_path_or_dir)
    if path.is_dir():
        if not (path / MANIFEST_NAME).is_file():
            if (path / IDS_NAME).is_file():
                return LoadedIds(read_shard(path / IDS_NAME), None, path / IDS_NAME)
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
        if is_variable(manifest) and len({p.shape[2:] for p in parts}) == 1:
            width = max(p.shape[1] for p in parts if p.ndim >= 2)
            parts = [pad_rows(list(p), width) if p.ndim >= 2 and p.shape[1] != width else p for p in parts]
        if len({p.shape[1:] for p in parts}) > 1:
            raise ExtractError(f"{path}: shards hold ids of different shapes {sorted({p.shape for p in parts})}")
        return LoadedIds(np.concatenate(parts), manifest, path / MANIFEST_NAME)
    arr = read_shard(path)
    beside = path.parent / MANIFEST_NAME
    manifest = read_manifest(beside) if beside.is_file() else None
    shard = next((s for s in (manifest or {"shards": []})["shards"] if s["file"] == path.name), None)
    return LoadedIds(arr, (_shard_view(manifest, shard) if shard else None), path)
