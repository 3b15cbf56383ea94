"""``discotok bench extract TOKENIZER_DIR DATA``: model-only against end-to-end extraction throughput.

Three figures in items/s over the first ``limit`` inputs of DATA, side by side: the model alone
(``Tokenizer.encode`` over batches read beforehand, untimed), ``discotok.extract`` in this process
(reading, decoding, batching, encoding and writing shards), and the ``discotok encode`` command in a
fresh process, counting its start-up (Python and torch imports, loading the tokenizer). The last
two are also given as a fraction of the first. A benchmark, never a timed test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from discotok.commands.bench import bench_parser
from discotok.bench.quantizers import allocator_in_effect, write_json
from discotok.markdown import markdown_table
from discotok.extraction.encode import extract, make_reader
from discotok.extraction.sources import Reader, open_source
from discotok.tokenizers.tokenizer import Tokenizer


def list_file(data: str, limit: int | None, folder: Path, reader: Reader) -> Path:
    """A text file of the first ``limit`` inputs of ``data`` (all of them when None) that ``reader`` reads, for
    both extraction runs."""
    items = open_source(data, extensions=reader.tar_extensions, member=reader.tar_member).items[:limit]
    path = folder / "inputs.txt"
    path.write_text("".join(f"{item.path}\n" for item in items if item.offset is None))
    return path


def model_only(tok: Tokenizer, inputs: Path, batch_size: int, precision: str) -> tuple[float, int]:
    """Items/s of ``encode`` alone over batches read beforehand, and the number of items."""
    reader = make_reader(tok)
    tensors = [reader.load(item)[0] for item in open_source(inputs, extensions=reader.tar_extensions, member=reader.tar_member).items]
    batches = [reader.collate(tensors[i : i + batch_size]) for i in range(0, len(tensors), batch_size)]
    with torch.inference_mode():
        tok.encode(batches[0][0], precision=precision, **batches[0][1])  # warm-up
        start = time.perf_counter()
        for x, extra in batches:
            tok.encode(x, precision=precision, **extra)
        seconds = time.perf_counter() - start
    return len(tensors) / seconds, len(tensors)


def measure(tokenizer: str, data: str, batch_size: int = 64, workers: int | None = None, precision: str = "fp32",
            threads: int = 2, limit: int | None = None) -> dict:
    """One row: model-only, in-process and command-line items/s over the same inputs."""
    torch.set_num_threads(threads)
    tok = Tokenizer.from_pretrained(tokenizer)
    row = {"tokenizer": tokenizer, "data": data, "batch_size": batch_size, "precision": precision,
           "threads": threads, "allocator": allocator_in_effect(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="discotok-bench-extract-") as tmp:
        folder = Path(tmp)
        inputs = list_file(data, limit, folder, make_reader(tok))
        row["model_items_s"], row["items"] = model_only(tok, inputs, batch_size, precision)
        options = {"batch_size": batch_size, "precision": precision, "progress": False}
        if workers is not None:
            options["workers"] = workers
        start = time.perf_counter()
        extract(tok, inputs, folder / "in_process", **options)
        row["in_process_items_s"] = row["items"] / (time.perf_counter() - start)
        command = [sys.executable, "-m", "discotok.cli", "encode", tokenizer, str(inputs), "-o", str(folder / "cli"),
                   "--batch-size", str(batch_size), "--precision", precision, "--no-progress", "--device", "cpu"]
        command += ["--workers", str(workers)] if workers is not None else []
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        row["command_items_s"] = row["items"] / (time.perf_counter() - start)
    row["in_process_fraction"] = row["in_process_items_s"] / row["model_items_s"]
    row["command_fraction"] = row["command_items_s"] / row["model_items_s"]
    return row


def format_table(rows: list[dict]) -> str:
    """Markdown: model-only, in-process and command items/s side by side, with the fractions of model-only."""
    header = ["tokenizer", "precision", "items", "model-only items/s", "extract() items/s (x model)",
              "`discotok encode` items/s incl. start-up (x model)"]
    return markdown_table(header, [
        [r["tokenizer"], r["precision"], r["items"], f"{r['model_items_s']:.1f}",
         f"{r['in_process_items_s']:.1f} ({r['in_process_fraction']:.2f})",
         f"{r['command_items_s']:.1f} ({r['command_fraction']:.2f})"] for r in rows])


def main(argv: list[str] | None = None) -> int:
    """CLI: ``discotok bench extract TOKENIZER_DIR DATA [--batch-size 64] [--workers N] [--precision P] [--limit N]``."""
    parser = bench_parser("extract")
    args = parser.parse_args(argv)
    row = measure(args.tokenizer, args.data, args.batch_size, args.workers, args.precision, args.threads, args.limit)
    print(format_table([row]))
    if args.json:
        write_json(args.json, [row])
    return 0


if __name__ == "__main__":
    sys.exit(main())
