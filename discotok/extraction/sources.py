"""Inputs of extraction and evaluation: a fixed, ordered list of items, and a reader per modality.

A *source* is resolved once into ``SourceItem``s, so shards can be planned (and a killed
run resumed) over the same list:

* a folder: every regular, non-hidden file below it (recursive unless told otherwise),
  sorted; the key is the path relative to the folder;
* a text file of paths (any other file): one path per line, relative to the list's folder
  unless absolute; blank lines and lines starting with ``#`` are ignored; the key is the
  line as written;
* WebDataset shards: ``.tar`` files or a brace pattern (``data-{000..009}.tar``); one item per
  sample (members grouped by key as WebDataset does), its first image (or audio) member read
  by offset; the key is ``<tar name>/<sample key>``.

A *reader* turns an item's bytes into a tensor for one modality (``ImageReader``,
``AudioReader``), says what the manifest records about each item, and batches loaded tensors
for ``Tokenizer.encode``: images stacked, waveforms zero-padded with their lengths.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from discotok.data.audio import AUDIO_EXTENSIONS, AudioLoadError, load_audio, pad_batch
from discotok.data.images import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_PREPROCESSING,
    IMAGE_EXTENSIONS,
    ImageLoadError,
    ImagePreprocessing,
    iter_files,
    load_image_pixels,
    pixels_to_tensor,
)
from discotok.defaults import DEFAULT_MAX_DURATION
from discotok.io import ExtractError
from discotok.quantizers.base import NonFiniteError
from discotok.layout import Layout
from discotok.tokenizers.tokenizer import Tokenizer

IMAGE_PREPROCESSING = {
    "decoding": "8-bit RGB/grayscale PNGs already at image_size: torchvision (libpng); JPEGs: PIL at a reduced size "
                "(DCT scaling, draft mode) whose sides are still >= max(image_size); others: PIL",
    "orientation": "EXIF transpose",
    "color": "RGB; grayscale replicated, alpha composited on white, 16-bit scaled to 8-bit by the range 0..65535",
    "resize": "bicubic resize to cover image_size, then centre crop (no padding, no stretching)",
    "range": [-1.0, 1.0],
}
AUDIO_PREPROCESSING = {
    "decoding": "soundfile (libsndfile), float32",
    "channels": "mixed down to mono by the mean over channels, or mono duplicated to every channel",
    "resampling": "discotok.data.resample.resample to the model's rate (torchaudio's windowed sinc: Hann, "
                  "lowpass_filter_width 6, rolloff 0.99; per-sample taps for coprime rates) when a file has another rate",
    "batching": "zero-padded to the longest item of a batch with each item's length; each item keeps its valid "
                "frames only, num_frames(samples) = ceil(samples / hop)",
}
TAR_IMAGE_EXTENSIONS = tuple(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
TAR_AUDIO_EXTENSIONS = tuple(ext.lstrip(".") for ext in AUDIO_EXTENSIONS)


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


def _tar_items(tar_path: Path, extensions: tuple[str, ...], noun: str) -> list[SourceItem]:
    """One item per sample of a WebDataset tar shard, in the shard's order (its first member with one of
    ``extensions``; ``noun`` names that member in the problem of a sample without one)."""
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
        member = next((m for m in members if _sample_key(m.name)[1].lower() in extensions), None)
        full_key = f"{tar_path.name}/{key}"
        if member is None:
            exts = sorted(_sample_key(m.name)[1] for m in members)
            items.append(SourceItem(full_key, str(tar_path), stamp=stamp, problem=f"no {noun} member in sample (has {exts})"))
        else:
            items.append(SourceItem(full_key, str(tar_path), member.offset_data, member.size, stamp, member=member.name))
    return items


def _expand(spec: str) -> list[str]:
    if "{" in spec and ".." in spec:
        from braceexpand import braceexpand

        return list(braceexpand(spec))
    return [spec]


def open_source(
    spec: str | os.PathLike | Sequence[str | os.PathLike],
    recursive: bool = True,
    exclude: Iterable[Path] = (),
    extensions: Sequence[str] = TAR_IMAGE_EXTENSIONS,
    member: str = "image",
) -> Source:
    """Resolve ``spec`` (folder, text file of paths, ``.tar`` shards or a brace pattern, or a list
    of these) into its items; ``exclude`` names files never taken as inputs (our own outputs);
    ``extensions`` pick the ``member`` of a WebDataset sample (a reader's ``tar_extensions`` and ``tar_member``)."""
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
                items += _tar_items(path, tuple(extensions), member)
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

    tar_extensions: tuple[str, ...]
    tar_member: str

    def load(self, item: SourceItem) -> tuple[Tensor, dict]:
        """The item as a tensor and what the manifest records about it; raises an error with a
        ``problem`` attribute when it cannot."""

    def collate(self, tensors: list[Tensor]) -> tuple[Tensor, dict]:
        """A batch for ``Tokenizer.encode`` and extra keyword arguments for it (``lengths`` for audio)."""

    def describe(self) -> dict:
        """What the manifest records about the preprocessing."""

    def summarize(self, infos: list[dict]) -> dict:
        """What the manifest records about the items as a whole (from their ``load`` infos)."""


class ImageReader:
    """Images resized to cover ``size`` (H, W) and centre cropped, in [-1, 1] (``IMAGE_PREPROCESSING``, or a
    publisher's resize filter and alpha blending, ``preprocessing``); images of more than ``max_pixels`` pixels are
    refused before decoding."""

    tar_extensions, tar_member = TAR_IMAGE_EXTENSIONS, "image"

    def __init__(self, size: Sequence[int], max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 preprocessing: ImagePreprocessing = DEFAULT_PREPROCESSING) -> None:
        self.size = tuple(int(s) for s in size)
        self.max_pixels = max_pixels
        self.preprocessing = preprocessing

    def load(self, item: SourceItem) -> tuple[Tensor, dict]:
        """uint8 pixels (3, H, W): a quarter of float32's bytes between loader processes."""
        return load_image_pixels(item.name, self.size, item.read_bytes(), self.max_pixels, self.preprocessing), {}

    def collate(self, tensors: list[Tensor]) -> tuple[Tensor, dict]:
        """The stacked batch, converted to float in [-1, 1] in one operation."""
        return pixels_to_tensor(torch.stack(tensors)), {}

    def describe(self) -> dict:
        steps = dict(IMAGE_PREPROCESSING)
        if self.preprocessing != DEFAULT_PREPROCESSING:
            steps.update(publisher={"resize_filter": self.preprocessing.resize_filter,
                                    "alpha_blend": self.preprocessing.alpha_blend},
                         resize=f"{self.preprocessing.resize_filter} resize (PIL, whole image decoded) to cover "
                                "image_size, then centre crop")
        return {"image_size": list(self.size), "max_pixels": self.max_pixels, "preprocessing": steps}

    def summarize(self, infos: list[dict]) -> dict:
        return {}


class AudioReader:
    """Waveforms (channels, T) at ``sample_rate`` through ``discotok.data.audio.load_audio`` (``AUDIO_PREPROCESSING``).

    Files shorter than ``min_samples`` (at the model's rate) are refused; ``max_seconds`` keeps
    the first seconds of longer files. A file (or its first ``max_seconds``) longer than
    ``max_duration`` seconds (default ``DEFAULT_MAX_DURATION``, 600; None: no limit) is refused from
    its header before it is read: the batch tensor and the encoder's activations grow with the
    longest item, so one two-hour file would need tens of gigabytes. Each item records ``samples`` (its length at the model's
    rate), ``source_sample_rate``, ``source_channels`` and ``cropped`` when it was cut.
    """

    tar_extensions, tar_member = TAR_AUDIO_EXTENSIONS, "audio"

    def __init__(self, sample_rate: int, channels: int, min_samples: int = 1, max_seconds: float | None = None,
                 max_duration: float | None = DEFAULT_MAX_DURATION) -> None:
        if max_seconds is not None and max_seconds * sample_rate < min_samples:
            raise ExtractError(f"max_seconds must keep at least {min_samples} samples at {sample_rate} Hz, got {max_seconds}")
        if max_duration is not None and not max_duration > 0:
            raise ExtractError(f"max_duration (--max-duration) must be positive, got {max_duration}")
        self.sample_rate, self.channels, self.min_samples, self.max_seconds = sample_rate, channels, min_samples, max_seconds
        self.max_duration = max_duration

    def load(self, item: SourceItem) -> tuple[Tensor, dict]:
        data = item.read_bytes()
        # Read a little past max_seconds so that the crop both is detected and keeps the
        # resampling filter's right context (the first max_seconds equal those of the whole file).
        duration = None if self.max_seconds is None else self.max_seconds + 0.1
        within = self.max_duration is None or (self.max_seconds is not None and self.max_seconds <= self.max_duration)
        wave, info = load_audio(item.path if data is None else io.BytesIO(data), self.sample_rate, self.channels,
                                self.min_samples, name=item.name, duration=duration,
                                max_duration=None if within else self.max_duration)
        record = {"samples": wave.shape[-1], "source_sample_rate": info.source_sample_rate,
                  "source_channels": info.source_channels}
        if self.max_seconds is not None and wave.shape[-1] > round(self.max_seconds * self.sample_rate):
            wave = wave[:, : round(self.max_seconds * self.sample_rate)].contiguous()
            record.update(samples=wave.shape[-1], cropped=True)
        return wave, record

    def collate(self, tensors: list[Tensor]) -> tuple[Tensor, dict]:
        x, lengths = pad_batch(tensors)
        return x, {"lengths": lengths}

    def describe(self) -> dict:
        return {"sample_rate": self.sample_rate, "channels": self.channels, "min_samples": self.min_samples,
                "max_seconds": self.max_seconds, "max_duration": self.max_duration, "preprocessing": AUDIO_PREPROCESSING}

    def summarize(self, infos: list[dict]) -> dict:
        """Total duration and how many items were resampled (from which rates), channel-converted or cropped."""
        rates: dict[str, int] = {}
        for info in infos:
            rates[str(info["source_sample_rate"])] = rates.get(str(info["source_sample_rate"]), 0) + 1
        return {
            "total_seconds": sum(i["samples"] for i in infos) / self.sample_rate,
            "resampled_items": sum(i["source_sample_rate"] != self.sample_rate for i in infos),
            "source_sample_rates": dict(sorted(rates.items(), key=lambda kv: int(kv[0]))),
            "channels_converted_items": sum(i["source_channels"] != self.channels for i in infos),
            "cropped_items": sum(bool(i.get("cropped")) for i in infos),
        }


class ItemDataset(Dataset):
    """``(index, (tensor, info))`` for a readable item, ``(index, reason)`` for one that is not."""

    def __init__(self, items: Sequence[SourceItem], reader: Reader) -> None:
        self.items = items
        self.reader = reader

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, tuple[Tensor, dict] | str]:
        item = self.items[index]
        if item.problem is not None:
            return index, item.problem
        try:
            return index, self.reader.load(item)
        except (ImageLoadError, AudioLoadError) as err:
            return index, err.problem
        except (OSError, ValueError) as err:
            return index, f"cannot read input ({type(err).__name__}: {err})"


@dataclass
class LoadedBatch:
    """Items of one batch that could be read (indices, tensors, infos) and those that could not."""

    indices: list[int] = field(default_factory=list)
    tensors: list[Tensor] = field(default_factory=list)
    infos: list[dict] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)

    def without(self, positions: Sequence[int], reason: str) -> "LoadedBatch":
        """This batch with the items at ``positions`` moved to the failures with ``reason``."""
        drop = set(positions)
        keep = [p for p in range(len(self.indices)) if p not in drop]
        return LoadedBatch([self.indices[p] for p in keep], [self.tensors[p] for p in keep],
                           [self.infos[p] for p in keep],
                           self.failures + [(self.indices[p], reason) for p in sorted(drop)])


def collate_items(batch: list[tuple[int, tuple[Tensor, dict] | str]]) -> LoadedBatch:
    """Split a loaded batch into the good items and the ``(index, reason)`` of bad ones."""
    out = LoadedBatch()
    for index, loaded in batch:
        if isinstance(loaded, str):
            out.failures.append((index, loaded))
        else:
            out.indices.append(index)
            out.tensors.append(loaded[0])
            out.infos.append(loaded[1])
    return out


@dataclass
class EncodedBatch:
    """A batch's ids, one row per good item (variable-length items: their valid frames only, with
    ``frames`` added to their infos), and the ``(index, reason)`` of unreadable items.

    ``layout`` is the token layout shared by the rows; None for variable-length items (each
    row's layout is ``Layout("frames", (frames,))``) and for a batch without good items.
    """

    indices: list[int]
    rows: list[np.ndarray]
    infos: list[dict]
    failures: list[tuple[int, str]]
    layout: Layout | None


def encode_batch(tokenizer: Tokenizer, reader: Reader, batch: LoadedBatch, options: dict) -> EncodedBatch:
    """Encode the good items of ``batch`` as the modality stores them (``Modality.encode_items``: a padded audio
    batch keeps each item's ``num_frames(samples)`` frames, or its segments' frames and loudness scales).

    Items holding NaN or inf (in the input or in the encoder's latents) join the batch's
    failures, and the rest are encoded.
    """
    while batch.tensors:
        try:
            return _encode_good(tokenizer, reader, batch, options)
        except NonFiniteError as err:
            batch = batch.without(err.items, err.problem)
    return EncodedBatch([], [], [], batch.failures, None)


def _encode_good(tokenizer: Tokenizer, reader: Reader, batch: LoadedBatch, options: dict) -> EncodedBatch:
    x, extra = reader.collate(batch.tensors)
    x = x.to(next(tokenizer.parameters()).device)
    try:
        ids, layout, coded = tokenizer.modality.encode_items(tokenizer, x, **extra, **options)
    except NonFiniteError:
        raise
    except (TypeError, ValueError) as err:
        opts = f" with options {options}" if options else ""
        raise ExtractError(f"the tokenizer cannot encode inputs of shape {tuple(x.shape[1:])}{opts}: {err}") from err
    rows = [row.to("cpu", torch.int64).numpy() for row in ids]
    infos = batch.infos if coded is None else [{**c, **info} for c, info in zip(coded, batch.infos, strict=True)]
    return EncodedBatch(batch.indices, rows, infos, batch.failures, layout)
