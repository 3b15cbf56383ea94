"""Sharded, resumable output: which shards a run needs, writing them, merging the manifest.

The item list is cut into shards of ``shard_size`` items in order; shard ``i`` is written
as ``ids-0000i.<ext>`` and then its record ``ids-0000i.json`` (items, skipped inputs, a
fingerprint of the run and of the shard's inputs, the data file's sha256; for
variable-length items also ``item_info``: each item's frames, samples and source rate), each
under a temporary name renamed when complete. A shard counts as done when its record matches the
run and its inputs and the data file's hash matches the record: re-running the same
command skips done shards, so nothing is encoded twice and nothing is lost. When every
shard is done, ``manifest.json`` is written from the records (rank 0 only under DDP).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import Sampler

from discotok.atomic import atomic_path
from discotok.extraction.sources import EncodedBatch, SourceItem
from discotok.io import (
    FORMATS,
    IDS_NAME,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    PAD_ID,
    SUFFIX,
    ExtractError,
    pad_rows,
    sha256_file,
    write_shard,
)
from discotok.layout import Layout

RECORD_FORMAT = "discotok.ids.shard"


def shard_stem(index: int) -> str:
    return f"ids-{index:05d}"


def is_own_output(path: Path) -> bool:
    """Whether ``path`` is a file ``discotok encode`` writes (never taken as an input)."""
    name = path.name
    return name in (MANIFEST_NAME, IDS_NAME) or (name.startswith("ids-") and name.endswith((".json", *SUFFIX.values())))


@dataclass
class ShardPlan:
    """The shards of one run over ``items``, written to ``output_dir`` in format ``fmt``."""

    output_dir: Path
    fmt: str
    shard_size: int
    items: Sequence[SourceItem]
    run_id: str

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise ExtractError(f"unknown output format {self.fmt!r}; choose one of {', '.join(FORMATS)}")
        if self.shard_size < 1:
            raise ExtractError(f"shard_size must be >= 1, got {self.shard_size}")

    @property
    def num_shards(self) -> int:
        return math.ceil(len(self.items) / self.shard_size)

    def rows(self, index: int) -> range:
        """Item indices of shard ``index``."""
        return range(index * self.shard_size, min((index + 1) * self.shard_size, len(self.items)))

    def shard_of(self, item_index: int) -> int:
        return item_index // self.shard_size

    def data_path(self, index: int) -> Path:
        return self.output_dir / (shard_stem(index) + SUFFIX[self.fmt])

    def record_path(self, index: int) -> Path:
        return self.output_dir / (shard_stem(index) + ".json")

    def inputs_id(self, index: int) -> str:
        digest = hashlib.sha256()
        for i in self.rows(index):
            item = self.items[i]
            digest.update(json.dumps([item.key, item.offset, *item.stamp]).encode())
        return digest.hexdigest()

    def read_record(self, index: int) -> dict | None:
        path = self.record_path(index)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return record if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else None

    def is_done(self, index: int) -> bool:
        """Whether shard ``index`` was completed by this same run over the same inputs."""
        record = self.read_record(index)
        if record is None or record.get("run") != self.run_id or record.get("inputs") != self.inputs_id(index):
            return False
        if record.get("file") is None:
            return True
        data = self.output_dir / record["file"]
        return data.is_file() and sha256_file(data) == record.get("sha256")

    def check_foreign(self, overwrite: bool) -> None:
        """Refuse a folder holding shards of a different run (other tokenizer, options, format or shard size)."""
        if overwrite:
            return
        for index in range(self.num_shards):
            record = self.read_record(index)
            if record is not None and record.get("run") != self.run_id:
                raise ExtractError(
                    f"{self.output_dir} holds shards of a different extraction ({self.record_path(index).name}: "
                    "other tokenizer, options, format or shard size); use another output folder or --overwrite"
                )

    def pending(self, rank: int = 0, world_size: int = 1) -> list[int]:
        """Shards of ``rank`` (round robin) that are not done yet."""
        return [i for i in range(rank, self.num_shards, world_size) if not self.is_done(i)]


@dataclass
class _Partial:
    rows: dict[int, np.ndarray] = field(default_factory=dict)
    infos: dict[int, dict] = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)


class ShardWriter:
    """Collects encoded batches and writes each shard as soon as all its items are in."""

    def __init__(self, plan: ShardPlan, rank: int = 0) -> None:
        self.plan = plan
        self.rank = rank
        self.partial: dict[int, _Partial] = {}
        self.layouts: set[Layout] = set()
        self.written: list[int] = []

    def add(self, batch: EncodedBatch) -> None:
        """Record an encoded batch: its rows and the ``(index, reason)`` of unreadable items."""
        if batch.layout is not None:
            self.layouts.add(batch.layout)
        touched = set()
        for index, row, info in zip(batch.indices, batch.rows, batch.infos, strict=True):
            part = self.partial.setdefault(self.plan.shard_of(index), _Partial())
            part.rows[index], part.infos[index] = row, info
            touched.add(self.plan.shard_of(index))
        for index, reason in batch.failures:
            self.partial.setdefault(self.plan.shard_of(index), _Partial()).skipped[index] = reason
            touched.add(self.plan.shard_of(index))
        for shard in sorted(touched):
            part = self.partial[shard]
            if len(part.rows) + len(part.skipped) == len(self.plan.rows(shard)):
                self._write(shard, self.partial.pop(shard))

    def _write(self, index: int, part: _Partial) -> None:
        plan = self.plan
        order = sorted(part.rows)
        sources = [plan.items[i].key for i in order]
        infos = [part.infos[i] for i in order]
        variable = any("frames" in info for info in infos)
        record = {
            "format": RECORD_FORMAT, "run": plan.run_id, "shard": index, "inputs": plan.inputs_id(index),
            "rank": self.rank, "file": None, "sha256": None, "ids_shape": [0], "layout": None,
            "items": sources,
            "skipped": [{"source": plan.items[i].key, "error": part.skipped[i]} for i in sorted(part.skipped)],
        }
        if order:
            if variable:  # rows padded with PAD_ID to the shard's longest item
                ids = pad_rows([part.rows[i] for i in order])
                layout = Layout("frames", (ids.shape[1],))
                record["item_info"] = infos
            elif len(self.layouts) != 1:
                raise ExtractError(f"batches came out with different token layouts: {sorted(map(str, self.layouts))}")
            else:
                ids, layout = np.stack([part.rows[i] for i in order]), next(iter(self.layouts))
            path = plan.data_path(index)
            with atomic_path(path) as tmp:
                write_shard(plan.fmt, tmp, ids, sources, infos=infos if variable else None)
                digest = sha256_file(tmp)
            record.update(file=path.name, sha256=digest, ids_shape=list(ids.shape), layout=layout.to_dict())
        with atomic_path(plan.record_path(index)) as tmp:
            tmp.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
        self.written.append(index)

    def finish(self) -> None:
        """Fail loudly if a shard was left incomplete (an item never arrived)."""
        if self.partial:
            raise ExtractError(f"shards {sorted(self.partial)} did not receive all their items")


def merge_manifest(plan: ShardPlan, header: dict, summarize: Callable[[list[dict]], dict] | None = None) -> dict:
    """Write ``manifest.json`` from the records of every shard; returns the manifest.

    Variable-length (``frames``) shards merge into one width, the longest item; each item
    carries its ``frames`` and ``samples``; ``summarize(item infos)`` adds set-wide figures.
    """
    rows, items, infos, skipped, shards, layouts, shapes, widths = 0, [], [], [], [], set(), set(), []
    for index in range(plan.num_shards):
        if not plan.is_done(index):
            raise ExtractError(f"shard {index} ({plan.record_path(index).name}) is missing or incomplete; re-run to finish it")
        record = plan.read_record(index)
        skipped += record["skipped"]
        if record["file"] is None:
            continue
        count = record["ids_shape"][0]
        shards.append({"file": record["file"], "rows": count, "first_row": rows, "sha256": record["sha256"]})
        shard_infos = record.get("item_info") or [{}] * count
        items += [{"row": rows + j, "source": s, "shard": index, **info}
                  for j, (s, info) in enumerate(zip(record["items"], shard_infos))]
        infos += shard_infos
        variable = record["layout"]["kind"] == "frames" and "item_info" in record
        layouts.add(json.dumps({"kind": "frames"} if variable else record["layout"], sort_keys=True))
        shapes.add(tuple(record["ids_shape"][2 if variable else 1 :]))
        widths.append(record["ids_shape"][1])
        rows += count
    if rows == 0:
        raise ExtractError(f"none of the {len(plan.items)} inputs could be encoded", skipped)
    if len(layouts) != 1 or len(shapes) != 1:
        raise ExtractError(f"shards hold different token layouts or id shapes: {sorted(layouts)} {sorted(shapes)}")
    layout = json.loads(layouts.pop())
    variable = "shape" not in layout
    rest = [max(widths), *shapes.pop()] if variable else list(shapes.pop())
    if variable:
        layout["shape"] = [rest[0]]
    columns = rest[1] if len(rest) == 2 else None
    manifest = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, **header,
        "depth": header.get("depth", columns), "bits_per_token": math.log2(header["codebook_size"]) * (columns or 1),
        "layout": layout, "num_tokens": None if variable else rest[0],
        **({"pad_id": PAD_ID, "max_frames": rest[0], "total_frames": sum(i["frames"] for i in infos)} if variable else {}),
        **(summarize(infos) if summarize else {}),
        "output_format": plan.fmt, "shard_size": plan.shard_size, "run": plan.run_id,
        "ids_dtype": "int64", "ids_shape": [rows, *rest],
        "shards": shards, "items": items, "skipped": skipped,
    }
    with atomic_path(plan.output_dir / MANIFEST_NAME) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


class ShardBatches(Sampler[list[int]]):
    """Batches of item indices that never straddle a shard, over the given shards in order."""

    def __init__(self, plan: ShardPlan, shards: Sequence[int], batch_size: int) -> None:
        self.plan, self.shards, self.batch_size = plan, list(shards), batch_size

    def __iter__(self) -> Iterator[list[int]]:
        for shard in self.shards:
            rows = self.plan.rows(shard)
            for start in range(rows.start, rows.stop, self.batch_size):
                yield list(range(start, min(start + self.batch_size, rows.stop)))

    def __len__(self) -> int:
        return sum(-(-len(self.plan.rows(s)) // self.batch_size) for s in self.shards)
