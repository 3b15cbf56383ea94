"""``discotok.extract``: inputs -> sharded ids + ``manifest.json``, resumable, on one device or many.

One device runs a plain loop; several (``devices=2``, GPUs or CPU processes) run Lightning's
``Trainer.predict`` with a prediction-writer callback (``discotok.extraction.distributed``): each
rank encodes and writes its own shards (round robin), then rank 0 writes the one merged
manifest. Both paths share the item list, the shard plan and the shard writer, so their
outputs are identical.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from discotok.extraction.lock import claim_output
from discotok.extraction.shards import ShardBatches, ShardPlan, ShardWriter, is_own_output, merge_manifest
from discotok.extraction.sources import (
    DEFAULT_MAX_DURATION,
    ItemDataset,
    Reader,
    collate_items,
    encode_batch,
    open_source,
)
from discotok.data.images import DEFAULT_MAX_PIXELS
from discotok.io import MANIFEST_NAME, ExtractError
from discotok.nn.precision import resolve_precision
from discotok.tokenizers.tokenizer import Tokenizer


@dataclass
class ExtractReport:
    """What one call of ``extract`` did. ``manifest`` is None on DDP ranks other than 0."""

    output_dir: Path
    manifest: dict | None
    num_inputs: int
    shards_total: int
    shards_done_before: list[int] = field(default_factory=list)
    shards_written: list[int] = field(default_factory=list)
    rank: int = 0

    @property
    def manifest_path(self) -> Path:
        return self.output_dir / MANIFEST_NAME

    @property
    def num_encoded(self) -> int:
        return self.manifest["ids_shape"][0] if self.manifest else 0

    @property
    def skipped(self) -> list[dict]:
        return self.manifest["skipped"] if self.manifest else []

    @property
    def ids_shape(self) -> tuple[int, ...]:
        return tuple(self.manifest["ids_shape"]) if self.manifest else ()


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    """sha256 over the tokenizer's config and every tensor of its state dict."""
    digest = hashlib.sha256(json.dumps(tokenizer.config, sort_keys=True).encode())
    for name, tensor in sorted(tokenizer.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def make_reader(
    tokenizer: Tokenizer,
    image_size: int | Sequence[int] | None = None,
    max_seconds: float | None = None,
    max_duration: float | None = DEFAULT_MAX_DURATION,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Reader:
    """The input reader of the tokenizer's modality (``Modality.reader``): images resized and cropped to
    ``image_size`` (default: the tokenizer's), at most ``max_pixels`` pixels each before resizing; or
    waveforms at the tokenizer's rate and channels, at least one hop long, the first ``max_seconds`` of
    each file (default: all of it), files longer than ``max_duration`` seconds refused (None: no limit)."""
    return tokenizer.modality.reader(image_size, max_seconds, max_duration, max_pixels)


def encode_options(
    tokenizer: Tokenizer, num_tokens: int | None = None, depth: int | None = None, precision: str = "fp32"
) -> dict[str, int | str]:
    """Checked keyword arguments for ``tokenizer.encode``: ``num_tokens`` (1-D tokenizers), ``depth`` (RVQ),
    ``precision`` resolved on the tokenizer's device (recorded only when it is not fp32, so fp32 runs keep
    their manifest and resume as before)."""
    options: dict[str, int | str] = {}
    try:
        resolved = resolve_precision(precision, next(tokenizer.parameters()).device)
    except ValueError as err:
        raise ExtractError(f"--precision: {err}") from err
    if resolved != "fp32":
        options["precision"] = resolved
    name = tokenizer.config["quantizer"]["name"]
    if depth is not None:
        max_depth = tokenizer.quantizer.depth
        if max_depth is None:
            raise ExtractError(f"--depth applies to residual quantizers such as rvq; quantizer {name!r} has no depth")
        if not 1 <= depth <= max_depth:
            raise ExtractError(f"--depth {depth} exceeds the quantizer's depth {max_depth}" if depth > max_depth
                               else f"--depth must be >= 1, got {depth}")
        options["depth"] = int(depth)
    if num_tokens is not None:
        n = tokenizer.encoder.sequence_length
        if n is None:
            raise ExtractError(f"--num-tokens selects a prefix of a 1-D tokenizer; encoder "
                               f"{tokenizer.config['encoder']['name']!r} has no prefix of tokens")
        if not 1 <= num_tokens <= n:
            raise ExtractError(f"--num-tokens must lie in 1..{n}, got {num_tokens}")
        options["num_tokens"] = int(num_tokens)
    return options


def default_workers() -> int:
    """Loader processes sized to the cores this process may use: half of them (the model's threads take the
    rest), at most 8; none (reading in this process) on a machine of 2 cores or fewer, where a loader process
    only takes a core from the model (measured on 2 cores, 378 64x64 PNGs, the default tokenizer: in-process
    extraction at 0.80 of the model-only rate with no loader, 0.44 with one)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores <= 2 else min(8, cores // 2)


def _run_local(plan: ShardPlan, shards: list[int], tokenizer: Tokenizer, reader: Reader, options: dict,
               batch_size: int, workers: int, progress: bool) -> list[int]:
    loader = DataLoader(ItemDataset(plan.items, reader), batch_sampler=ShardBatches(plan, shards, batch_size),
                        num_workers=workers, collate_fn=collate_items)
    writer = ShardWriter(plan)
    todo = sum(len(plan.rows(s)) for s in shards)
    bar = tqdm(total=len(plan.items), initial=len(plan.items) - todo, desc="encode", unit="item",
               file=sys.stderr, disable=not progress)
    with bar, torch.inference_mode():
        for batch in loader:
            writer.add(encode_batch(tokenizer, reader, batch, options))
            bar.update(len(batch.indices) + len(batch.failures))
    writer.finish()
    return writer.written


def extract(
    tokenizer: Tokenizer | str | os.PathLike,
    source: str | os.PathLike | Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    format: str = "npy",
    shard_size: int = 1000,
    batch_size: int = 16,
    image_size: int | Sequence[int] | None = None,
    max_seconds: float | None = None,
    max_duration: float | None = DEFAULT_MAX_DURATION,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    num_tokens: int | None = None,
    depth: int | None = None,
    precision: str = "fp32",
    recursive: bool = True,
    workers: int | None = None,
    devices: int = 1,
    accelerator: str = "auto",
    strategy: str = "ddp",
    overwrite: bool = False,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> ExtractReport:
    """Encode every input of ``source`` into sharded ids under ``output_dir``; resumable.

    ``source``: a folder (recursive), a text file of paths, WebDataset ``.tar`` shards (or a
    brace pattern), or a list of these; images or audio files, as the tokenizer's modality.
    ``format``: ``npy``, ``safetensors`` or ``wds``. Each shard holds ``shard_size`` inputs
    (fewer when some are unreadable: those are listed in the manifest's ``skipped``).
    Re-running the same call skips finished shards (and removes the temporaries a killed run
    left); a folder holding another run's shards is refused unless ``overwrite``, and a folder
    another run is writing to (its lock file ``.discotok.lock``) is refused at once.
    ``num_tokens=k`` keeps the first k tokens of a 1-D tokenizer, ``depth`` the first levels of
    a residual quantizer. Audio is read at the tokenizer's rate and channels (resampled, mixed
    down or duplicated), ``max_seconds`` of each file at most; each item keeps its valid frames
    (see ``discotok.io`` for the padding).
    Limits that keep one bad file from exhausting memory (such files are skipped with the reason):
    audio longer than ``max_duration`` seconds (default 600), images of more than ``max_pixels``
    pixels (default 2**26, 8192 x 8192); None lifts either.
    ``precision``: ``fp32`` (default), ``bf16`` or ``auto`` (``Tokenizer.encode``); the manifest's
    ``encode_options`` records bf16 when used.
    ``devices > 1`` runs one process per device through Lightning (``strategy``: ``ddp`` from
    a script or the CLI, ``ddp_notebook`` in a notebook); ``workers`` loader processes per device
    (None: ``default_workers()``).
    """
    if batch_size < 1:
        raise ExtractError(f"batch_size must be >= 1, got {batch_size}")
    workers = default_workers() if workers is None else workers
    tokenizer_path = None
    if not isinstance(tokenizer, Tokenizer):
        tokenizer_path = str(Path(tokenizer).resolve())
        tokenizer = Tokenizer.from_pretrained(tokenizer, device=device or "cpu")
    elif device is not None:
        tokenizer = tokenizer.to(device)
    tokenizer.eval()
    reader = make_reader(tokenizer, image_size, max_seconds, max_duration, max_pixels)
    options = encode_options(tokenizer, num_tokens, depth, precision)
    output_dir = Path(output_dir)
    own = [p for p in output_dir.iterdir() if is_own_output(p)] if output_dir.is_dir() else []
    src = open_source(source, recursive=recursive, exclude=own, extensions=reader.tar_extensions,
                      member=reader.tar_member)
    described = reader.describe()
    run = {"tokenizer": tokenizer_fingerprint(tokenizer), "reader": described, "options": options,
           "format": format, "shard_size": shard_size}
    run_id = hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()
    plan = ShardPlan(output_dir, format, shard_size, src.items, run_id)
    with claim_output(output_dir, "discotok encode", lambda name: is_own_output(Path(name))):
        plan.check_foreign(overwrite)
        pending = list(range(plan.num_shards)) if overwrite else plan.pending()
        done_before = sorted(set(range(plan.num_shards)) - set(pending))
        if devices == 1:
            written = _run_local(plan, pending, tokenizer, reader, options, batch_size, workers, progress)
            rank = 0
        else:
            from discotok.extraction.distributed import run_distributed

            written, rank = run_distributed(plan, tokenizer, reader, options, batch_size, workers, progress,
                                            devices=devices, accelerator=accelerator, strategy=strategy, overwrite=overwrite)
        manifest = None
        if rank == 0:
            header = {
                "modality": tokenizer.modality.name, "tokenizer": tokenizer_path, "tokenizer_config": tokenizer.config,
                "codebook_size": int(tokenizer.codebook_size), **described, **tokenizer.modality.manifest_header(options),
                "encode_options": options, "source": src.description,
                "depth": options.get("depth", tokenizer.quantizer.depth),  # levels (a multi-rate rvq has more columns)
            }
            manifest = merge_manifest(plan, header, reader.summarize)
    return ExtractReport(output_dir, manifest, len(src.items), plan.num_shards, done_before, written, rank)


def describe_report(report: ExtractReport) -> str:
    """One line for the terminal."""
    done = len(report.shards_done_before)
    resumed = f" ({done} already done by an earlier run)" if done else ""
    return (f"encoded {report.num_encoded} of {report.num_inputs} inputs, skipped {len(report.skipped)}: "
            f"{report.ids_shape} ids in {report.shards_total} shard(s){resumed}, {report.manifest_path}")
