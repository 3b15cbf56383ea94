"""The files of ``discotok encode`` / ``discotok decode``: ``ids.npy`` and ``manifest.json``.

Reading and checking them lives here; ``discotok.extract`` writes them, each through
``discotok.atomic.atomic_path`` (temporary name beside the target, then ``os.replace``).
"""

from __future__ import annotations

import json
import os
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
MANIFEST_VERSION = 1


class ExtractError(ValueError):
    """Encoding or decoding cannot proceed; ``skipped`` lists inputs rejected on the way."""

    def __init__(self, message: str, skipped: Sequence[dict] = ()) -> None:
        super().__init__(message)
        self.skipped = list(skipped)


def read_manifest(path: Path) -> dict:
    """Load and sanity-check a manifest written by ``discotok.extract.encode_folder``."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ExtractError(f"{path}: not a readable manifest ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ExtractError(f"{path}: not a discotok ids manifest (format should be {MANIFEST_FORMAT!r})")
    if manifest.get("version") != MANIFEST_VERSION:
        raise ExtractError(f"{path}: manifest version {manifest.get('version')!r} is not supported")
    ids_file = manifest.get("ids_file")
    if not isinstance(ids_file, str) or ids_file in ("", ".", "..") or PurePosixPath(ids_file).name != ids_file:
        raise ExtractError(f"{path}: 'ids_file' must be a file name in the same folder, got {ids_file!r}")
    try:
        Layout.from_dict(manifest["layout"])
        manifest["items"] = [{"row": int(i["row"]), "source": str(i["source"])} for i in manifest["items"]]
    except (KeyError, TypeError, ValueError) as err:
        raise ExtractError(f"{path}: malformed 'layout' or 'items' ({err!r})") from err
    return manifest


def load_ids(ids_path_or_dir: str | os.PathLike) -> tuple[np.ndarray, dict | None, Path]:
    """Read an ids array and its manifest (if any): a folder with ``manifest.json``/``ids.npy``,
    or a ``.npy`` file (its manifest is used when one beside it names it)."""
    path = Path(ids_path_or_dir)
    if path.is_dir():
        manifest = read_manifest(path / MANIFEST_NAME) if (path / MANIFEST_NAME).is_file() else None
        ids_path = path / (manifest["ids_file"] if manifest else IDS_NAME)
    else:
        ids_path, beside = path, path.parent / MANIFEST_NAME
        manifest = read_manifest(beside) if beside.is_file() else None
        if manifest is not None and manifest["ids_file"] != path.name:
            manifest = None
    if not ids_path.is_file():
        raise ExtractError(f"ids file {str(ids_path)!r} does not exist")
    try:
        arr = np.load(ids_path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ExtractError(f"{ids_path}: not a readable .npy array ({err})") from err
    if not isinstance(arr, np.ndarray):
        raise ExtractError(f"{ids_path}: expected a single .npy array, got an .npz archive")
    return arr, manifest, ids_path


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
