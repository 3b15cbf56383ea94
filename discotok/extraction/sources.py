"""Inputs of extraction and evaluation: a fixed, ordered list of items, and a reader per modality.

A *source* is resolved once into ``SourceItem``s, so shards can be planned (and a killed
run resumed) over the same list:

* a folder: every regular, non-hidden file below it (recursive unless told otherwise),
  sorted; the key is the path relative to the folder;
* a text file of paths (any other file): one path per line, relative to the list's folder
  unless absolute; blank lines and lines starting with ``#`` are ignored; the key is the
  line as written;
* WebDataset shards: ``.tar`` files or a brace pattern (``data-{000..009}.tar``); one item per
  sample (members grouped by key as WebDataset does), its first image member read by offset;
  the key is ``<tar name>/<sample key>``.

A *reader* turns an item's bytes into a tensor for one modality (``ImageReader`` here; the
audio reader plugs in beside it) and batches loaded tensors for ``Tokenizer.encode``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor
from torch.utils.data import Dataset

from discotok.data.images import IMAGE_EXTENSIONS, ImageLoadError, iter_files, load_image_tensor
from discotok.io import ExtractError
from discotok.tokenizers.layout import Layout
from discotok.tokenizers.tokenizer import Tokenizer

IMAGE_PREPROCESSING = {
    "orientation": "EXIF transpose",
    "color": "RGB; grayscale replicated, alpha composited on white, 16-bit scaled to 8-bit",
    "resize": "bicubic resize to cover image_size, then centre crop (no padding, no stretching)",
    "range": [-1.0, 1.0],
}
TAR_IMAGE_EXTENSIONS = tuple(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)


@dataclass(frozen=True)
class SourceItem:
    """One input: its key, the file holding it and, for a tar member, where its bytes lie.

    ``problem`` is set when listing already showed the item cannot be read (e.g. a
    WebDataset sample without an image member); ``stamp`` (size, mtime) feeds fingerprints.
    """

    key: str
    path: str
    offset: int | None = None
    size: int | None = None
    stamp: tuple[int, int] = (0, 0)
    problem: str | None = None
    member: str | None = None

    @property
    def name(self) -> str:
        """What errors call the item: its file, or ``shard.tar/member.png``."""
        return self.path if self.member is None else f"{self.path}/{self.member}"

    def read_bytes(self) -> bytes | None:
        """The member's bytes for a tar item; None for a plain file (readers open the path)."""
        if self.offset is None:
            return None
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return f.read(self.size)


@dataclass
class Source:
    """A resolved input: what it was (``description``) and its items in order."""

    description: dict
    items: list[SourceItem]

    def fingerprint(self) -> str:
        """sha256 over every item's key, size and modification time (changes when any file does)."""
        digest = hashlib.sha256()
        for item in self.items:
            digest.update(json.dumps([item.key, item.path, item.offset, *item.stamp]).encode())
        return digest.hexdigest()


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return int(st.st_size), int(st.st_mtime_ns)


def _folder_items(root: Path, recursive: bool, exclude: set[Path]) -> list[SourceItem]:
    items = []
    for path in iter_files(root, recursive):
        if path.resolve() in exclude:
            continue
        items.append(SourceItem(path.relative_to(root).as_posix(), str(path), stamp=_stamp(path)))
    return items


def _list_items(list_file: Path) -> list[SourceItem]:
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ExtractError(f"{list_file}: not a readable text file of paths ({err})") from err
    items = []
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry).expanduser()
        path = path if path.is_absolute() else list_file.parent / path
        if path.is_file():
            items.append(SourceItem(entry, str(path), stamp=_stamp(path)))
        else:
            items.append(SourceItem(entry, str(path), problem="listed file does not exist"))
    return items


def _sample_key(name: str) -> tuple[str, str]:
    """WebDataset's split of a member name into (sample key, extension): at the first dot of the file name."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (ext if dot else "")


def _tar_items(tar_path: Path) -> list[SourceItem]:
    """One item per sample of a WebDataset tar shard, in the shard's order."""
    samples: dict[str, list[tarfile.TarInfo]] = {}
    try:
        with tarfile.open(tar_path, "r:") as tar:
            for member in tar:
                if member.isfile() and not Path(member.name).name.startswith("."):
                    samples.setdefault(_sample_key(member.name)[0], []).append(member)
    except (OSError, tarfile.TarError) as err:
        raise ExtractError(f"{tar_path}: not a readable uncompressed tar shard ({err})") from err
    stamp = _stamp(tar_path)
    items = []
    for key, members in samples.items():
        image = next((m for m in members if _sample_key(m.name)[1].lower() in TAR_IMAGE_EXTENSIONS), None)
        full_key = f"{tar_path.name}/{key}"
        if image is None:
            exts = sorted(_sample_key(m.name)[1] for m in members)
            items.append(SourceItem(full_key, str(tar_path), stamp=stamp, problem=f"no image member in sample (has {exts})"))
        else:
            items.append(SourceItem(full_key, str(tar_path), image.offset_data, image.size, stamp, member=image.name))
    return items


def _expand(spec: str) -> list[str]:
    if "{" in spec and ".." in spec:
        from braceexpand import braceexpand

        return list(braceexpand(spec))
    return [spec]


def open_source(
    spec: str | os.PathLike | Sequence[str | os.PathLike], recursive: bool = True, exclude: Iterable[Path] = ()
) -> Source:
    """Resolve ``spec`` (folder, text file of paths, ``.tar`` shards or a brace pattern, or a list
    of these) into its items; ``exclude`` names files never taken as inputs (our own outputs)."""
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    if not specs:
        raise ExtractError("no input given")
    exclude = {Path(p).resolve() for p in exclude}
    items: list[SourceItem] = []
    kinds = []
    for one in specs:
        for name in _expand(str(one)):
            path = Path(name).expanduser()
            if path.is_dir():
                items += _folder_items(path, recursive, exclude)
                kinds.append({"kind": "folder", "path": str(path.resolve()), "recursive": recursive})
            elif path.is_file() and path.suffix == ".tar":
                items += _tar_items(path)
                kinds.append({"kind": "webdataset", "path": str(path.resolve())})
            elif path.is_file():
                items += _list_items(path)
                kinds.append({"kind": "list", "path": str(path.resolve())})
            else:
                raise ExtractError(f"input {name!r} does not exist (expected a folder, a .tar shard or a text file of paths)")
    if not items:
        raise ExtractError(f"no files to encode in {', '.join(repr(str(s)) for s in specs)}")
    return Source({"inputs": kinds, "num_items": len(items)}, items)


class Reader(Protocol):
    """Turns items of one modality into tensors and batches them for ``Tokenizer.encode``."""

    modality: str

    def load(self, item: SourceItem) -> Tensor:
        """The item as a tensor; raises an error with a ``problem`` attribute when it cannot."""

    def collate(self, tensors: list[Tensor]) -> tuple[Tensor, dict]:
        """A batch for ``Tokenizer.encode`` and extra keyword arguments for it."""

    def describe(self) -> dict:
        """What the manifest records about the preprocessing."""


class ImageReader:
    """Images resized to cover ``size`` (H, W) and centre cropped, in [-1, 1] (``IMAGE_PREPROCESSING``)."""

    modality = "image"

    def __init__(self, size: Sequence[int]) -> None:
        self.size = tuple(int(s) for s in size)

    def load(self, item: SourceItem) -> Tensor:
        return load_image_tensor(item.name, self.size, item.read_bytes())

    def collate(self, tensors: list[Tensor]) -> tuple[Tensor, dict]:
        return torch.stack(tensors), {}

    def describe(self) -> dict:
        return {"image_size": list(self.size), "preprocessing": IMAGE_PREPROCESSING}


class ItemDataset(Dataset):
    """``(index, tensor)`` for a readable item, ``(index, reason)`` for one that is not."""

    def __init__(self, items: Sequence[SourceItem], reader: Reader) -> None:
        self.items = items
        self.reader = reader

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, Tensor | str]:
        item = self.items[index]
        if item.problem is not None:
            return index, item.problem
        try:
            return index, self.reader.load(item)
        except ImageLoadError as err:
            return index, err.problem
        except (OSError, ValueError) as err:
            return index, f"cannot read input ({type(err).__name__}: {err})"


def collate_items(batch: list[tuple[int, Tensor | str]]) -> tuple[list[int], list[Tensor], list[tuple[int, str]]]:
    """Split a loaded batch into (indices of good items, their tensors, (index, reason) of bad ones)."""
    good = [(i, x) for i, x in batch if not isinstance(x, str)]
    bad = [(i, x) for i, x in batch if isinstance(x, str)]
    return [i for i, _ in good], [x for _, x in good], bad


def encode_batch(tokenizer: Tokenizer, reader: Reader, tensors: list[Tensor], options: dict) -> tuple[Tensor, Layout]:
    """Encode loaded items; returns ids (B, ...) and the layout."""
    x, extra = reader.collate(tensors)
    x = x.to(next(tokenizer.parameters()).device)
    try:
        return tokenizer.encode(x, return_layout=True, **extra, **options)
    except (TypeError, ValueError) as err:
        opts = f" with options {options}" if options else ""
        raise ExtractError(f"the tokenizer cannot encode inputs of shape {tuple(x.shape[1:])}{opts}: {err}") from err
