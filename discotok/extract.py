"""Token extraction: a folder of images -> ``ids.npy`` + ``manifest.json``, and ids -> PNGs.

Preprocessing applied by ``encode_folder`` to every image (also recorded in the
manifest): EXIF orientation applied; converted to RGB (grayscale replicated, palette
expanded, alpha composited on white, 16-bit scaled to 8-bit); bicubic resize so the
image *covers* the target (H, W), then a centre crop to exactly (H, W) — nothing is
padded or stretched; values scaled to [-1, 1].

Output folder of ``encode_folder``:

* ``ids.npy`` — int64, shape (num_items, N) or (num_items, N, depth); row i holds the
  image named by manifest item i.
* ``manifest.json`` — tokenizer facts (codebook size, depth, bits per token, token
  layout), image size, preprocessing, ``items`` (row -> source path relative to the
  input folder) and ``skipped`` (source -> why it was not encoded).

Every file is written atomically (``discotok.io``); the manifest is renamed into place
last, so a run that dies leaves nothing or the previous complete output.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from discotok.atomic import atomic_path
from discotok.data.images import ImageLoadError, iter_files, load_image_tensor, tensor_to_pil
from discotok.io import (
    IDS_NAME,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    ExtractError,
    check_ids_array,
    load_ids,
)
from discotok.tokenizers.layout import Layout
from discotok.tokenizers.tokenizer import Tokenizer, TokenizerLoadError

EXIT_OK, EXIT_ERROR, EXIT_SKIPPED = 0, 1, 3
PREPROCESSING = {
    "orientation": "EXIF transpose",
    "color": "RGB; grayscale replicated, alpha composited on white, 16-bit scaled to 8-bit",
    "resize": "bicubic resize to cover image_size, then centre crop (no padding, no stretching)",
    "range": [-1.0, 1.0],
}


@dataclass
class EncodeReport:
    """What ``encode_folder`` wrote and what it skipped."""

    ids_path: Path
    manifest_path: Path
    ids_shape: tuple[int, ...]
    items: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    @property
    def num_encoded(self) -> int:
        return len(self.items)


def _target_size(tokenizer: Tokenizer, image_size: int | Sequence[int] | None) -> tuple[int, int]:
    size = tokenizer.image_size if image_size is None else image_size
    if size is None:
        raise ExtractError("the tokenizer has no image_size in its config; pass image_size (H, W)")
    size = (size,) if isinstance(size, int) else tuple(int(s) for s in size)
    size = size * 2 if len(size) == 1 else size
    if len(size) != 2 or min(size) < 1:
        raise ExtractError(f"image_size must be one or two positive ints (H [W]), got {image_size!r}")
    return size


def _device(tokenizer: Tokenizer) -> torch.device:
    return next(tokenizer.parameters()).device


def _load_or_reason(path: Path, size: tuple[int, int]) -> Tensor | str:
    """The image as a tensor, or the reason it cannot be read."""
    try:
        return load_image_tensor(path, size)
    except ImageLoadError as err:
        return err.problem
    except (OSError, ValueError) as err:
        return f"cannot read image ({type(err).__name__}: {err})"


def _encode_batch(tokenizer: Tokenizer, batch: list[Tensor], kwargs: dict) -> tuple[Tensor, Layout]:
    x = torch.stack(batch).to(_device(tokenizer))
    try:
        ids, layout = tokenizer.encode(x, return_layout=True, **kwargs)
    except (TypeError, ValueError) as err:
        opts = f" with options {kwargs}" if kwargs else ""
        raise ExtractError(f"the tokenizer cannot encode {x.shape[-2]}x{x.shape[-1]} images{opts}: {err}") from err
    return ids.to("cpu", torch.int64), layout


def encode_folder(
    tokenizer: Tokenizer,
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    batch_size: int = 16,
    image_size: int | Sequence[int] | None = None,
    recursive: bool = True,
    progress: bool = True,
    tokenizer_path: str | os.PathLike | None = None,
    workers: int = 4,
    **quantizer_kwargs: Any,
) -> EncodeReport:
    """Encode every regular non-hidden file under ``input_dir`` (sorted) into ``output_dir``.

    Images are resized to cover ``image_size`` (default: the tokenizer's) and centre
    cropped (see the module docstring). Unreadable files are skipped and listed in the
    report and the manifest; ``ExtractError`` is raised when nothing could be encoded.
    ``workers`` threads decode image files; ``quantizer_kwargs`` (e.g. ``depth=K`` for
    RVQ) go to ``tokenizer.encode``. The ids and manifest files of ``output_dir`` are never inputs.
    """
    if batch_size < 1:
        raise ExtractError(f"batch_size must be >= 1, got {batch_size}")
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    size = _target_size(tokenizer, image_size)
    own_outputs = {(output_dir / name).resolve() for name in (IDS_NAME, MANIFEST_NAME)}
    files = [p for p in iter_files(input_dir, recursive) if p.resolve() not in own_outputs]
    if not files:
        raise ExtractError(f"no files to encode in {str(input_dir)!r}")

    items: list[dict] = []
    skipped: list[dict] = []
    rows: list[Tensor] = []
    pending: list[Tensor] = []
    layouts: set[Layout] = set()

    def flush() -> None:
        ids, layout = _encode_batch(tokenizer, pending, quantizer_kwargs)
        rows.append(ids)
        layouts.add(layout)
        pending.clear()

    load = partial(_load_or_reason, size=size)
    bar = tqdm(total=len(files), desc="encode", unit="img", file=sys.stderr, disable=not progress)
    with bar, ThreadPoolExecutor(max(1, workers)) as pool, torch.inference_mode():
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            for path, result in zip(chunk, pool.map(load, chunk)):
                source = path.relative_to(input_dir).as_posix()
                if isinstance(result, str):
                    skipped.append({"source": source, "error": result})
                else:
                    items.append({"row": len(items), "source": source})
                    pending.append(result)
            while len(pending) >= batch_size:
                flush()
            bar.update(len(chunk))
        if pending:
            flush()
    if not items:
        raise ExtractError(f"none of the {len(files)} files in {str(input_dir)!r} could be encoded", skipped)
    if len(layouts) != 1:
        raise ExtractError(f"batches came out with different token layouts: {sorted(map(str, layouts))}")

    ids = torch.cat(rows).numpy()
    layout = layouts.pop()
    depth = int(ids.shape[2]) if ids.ndim == 3 else None
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "tokenizer": str(Path(tokenizer_path).resolve()) if tokenizer_path is not None else None,
        "tokenizer_config": tokenizer.config,
        "codebook_size": int(tokenizer.codebook_size),
        "depth": depth,
        "bits_per_token": math.log2(tokenizer.codebook_size) * (depth or 1),
        "layout": layout.to_dict(),
        "num_tokens": layout.num_tokens,
        "image_size": list(size),
        "preprocessing": PREPROCESSING,
        "encode_options": quantizer_kwargs,
        "ids_file": IDS_NAME,
        "ids_dtype": "int64",
        "ids_shape": list(ids.shape),
        "items": items,
        "skipped": skipped,
    }
    ids_path, manifest_path = output_dir / IDS_NAME, output_dir / MANIFEST_NAME
    manifest_text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    # The manifest is renamed into place last (outer context exits after the inner one).
    with atomic_path(manifest_path) as manifest_tmp, atomic_path(ids_path) as ids_tmp:
        with open(ids_tmp, "wb") as f:
            np.save(f, ids, allow_pickle=False)
        manifest_tmp.write_text(manifest_text, encoding="utf-8")
    return EncodeReport(ids_path, manifest_path, tuple(ids.shape), items, skipped)


def _png_names(manifest: dict | None, num_rows: int) -> list[str]:
    """``0003_astronaut.png`` from the manifest's sources (unique by the row prefix), else ``0003.png``."""
    width = max(4, len(str(num_rows - 1)))
    stems = {}
    for item in (manifest or {}).get("items", []):
        stem = re.sub(r"[^\w.-]+", "_", PurePosixPath(item["source"]).stem)[:80].strip("._")
        stems[item["row"]] = f"_{stem}" if stem else ""
    return [f"{row:0{width}d}{stems.get(row, '')}.png" for row in range(num_rows)]


def decode_ids(
    tokenizer: Tokenizer,
    ids_path_or_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    batch_size: int = 16,
    progress: bool = True,
) -> list[Path]:
    """Decode ``ids.npy`` (or the folder holding it and its manifest) to one PNG per row.

    All ids are validated before anything is decoded; each PNG is written atomically.
    Returns the PNG paths in row order.
    """
    if batch_size < 1:
        raise ExtractError(f"batch_size must be >= 1, got {batch_size}")
    arr, manifest, ids_path = load_ids(ids_path_or_dir)
    ids, layout = check_ids_array(tokenizer, arr, manifest, ids_path)
    image_size = (manifest or {}).get("image_size")  # 1-D decoders: the size the images were encoded at
    output_dir = Path(output_dir)
    names = _png_names(manifest, ids.shape[0])
    output_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    bar = tqdm(total=ids.shape[0], desc="decode", unit="img", file=sys.stderr, disable=not progress)
    with bar, torch.inference_mode():
        for start in range(0, ids.shape[0], batch_size):
            images = tokenizer.decode(ids[start : start + batch_size], layout, image_size=image_size)
            for row, image in enumerate(images, start):
                path = output_dir / names[row]
                with atomic_path(path) as tmp:
                    tensor_to_pil(image).save(tmp, format="PNG")
                written.append(path)
            bar.update(len(images))
    return written


EXIT_HELP = """exit status:
  0  everything succeeded
  1  error, as one line on stderr: tokenizer directory missing, incomplete or refused,
     missing input, bad ids, options the tokenizer does not take
  2  bad command-line usage
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _device_arg(text: str) -> str:
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except RuntimeError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError("CUDA is not available on this machine")
    return str(device)


def _parser(prog: str, description: str, exit_help: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=description, epilog=exit_help, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("tokenizer", metavar="TOKENIZER_DIR", help="folder with config.json and model.safetensors")
    return parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=_positive_int, default=16, help="images per batch (default 16)")
    parser.add_argument("--device", type=_device_arg, default="auto", help="cpu, cuda, cuda:1, ... (default: auto)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _run(
    prog: str, parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int], argv: Sequence[str]
) -> int:
    """Parse ``argv`` and run ``body``; expected failures become one line on stderr and exit 1."""
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_ERROR
    try:
        return body(args)
    except (TokenizerLoadError, ValueError, OSError) as err:
        for item in getattr(err, "skipped", []):
            print(f"{prog}: skipped {item['source']}: {item['error']}", file=sys.stderr)
        message = " ".join(str(err).split())
        print(f"{prog}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _encode_command(args: argparse.Namespace) -> int:
    prog = "discotok encode"
    if args.image_size is not None and len(args.image_size) > 2:
        raise ExtractError(f"--image-size takes H or H W, got {len(args.image_size)} values")
    if not Path(args.input).is_dir():
        raise ExtractError(f"input folder {args.input!r} does not exist or is not a folder")
    tokenizer = Tokenizer.from_pretrained(args.tokenizer, device=args.device)
    kwargs = {}
    if args.depth is not None:
        max_depth = tokenizer.quantizer.depth
        name = getattr(tokenizer.quantizer, "registered_name", type(tokenizer.quantizer).__name__)
        if max_depth is None:
            raise ExtractError(f"--depth applies to residual quantizers such as rvq; quantizer {name!r} has no depth")
        if args.depth > max_depth:
            raise ExtractError(f"--depth {args.depth} exceeds the quantizer's depth {max_depth}")
        kwargs["depth"] = args.depth
    report = encode_folder(
        tokenizer,
        args.input,
        args.output,
        batch_size=args.batch_size,
        image_size=args.image_size,
        recursive=not args.no_recursive,
        progress=not args.no_progress,
        tokenizer_path=args.tokenizer,
        **kwargs,
    )
    for item in report.skipped:
        print(f"{prog}: skipped {item['source']}: {item['error']}", file=sys.stderr)
    print(
        f"encoded {report.num_encoded} images, skipped {len(report.skipped)}: "
        f"{report.ids_path} {report.ids_shape}, {report.manifest_path}"
    )
    return EXIT_SKIPPED if report.skipped else EXIT_OK


def encode_main(argv: Sequence[str]) -> int:
    """``discotok encode TOKENIZER_DIR INPUT_DIR -o OUTPUT_DIR``; returns the exit status."""
    prog = "discotok encode"
    parser = _parser(
        prog,
        "Encode every image under INPUT_DIR into OUTPUT_DIR/ids.npy (int64, one row per image)\n"
        "and OUTPUT_DIR/manifest.json (row -> source file, skipped files, token layout).\n"
        "Images are converted to RGB, resized to cover the image size and centre cropped.",
        EXIT_HELP + "  3  some inputs were skipped (listed on stderr with the reason and in the manifest)\n",
    )
    parser.add_argument("input", metavar="INPUT_DIR", help="folder of images (searched recursively)")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT_DIR", help="for ids.npy and manifest.json")
    parser.add_argument(
        "--image-size", type=_positive_int, nargs="+", metavar=("H", "W"), help="default: the tokenizer's image size"
    )
    parser.add_argument("--depth", type=_positive_int, metavar="K", help="residual depth to keep (RVQ tokenizers)")
    parser.add_argument("--no-recursive", action="store_true", help="only files directly in INPUT_DIR")
    _add_common(parser)
    return _run(prog, parser, _encode_command, argv)


def _decode_command(args: argparse.Namespace) -> int:
    tokenizer = Tokenizer.from_pretrained(args.tokenizer, device=args.device)
    paths = decode_ids(tokenizer, args.ids, args.output, batch_size=args.batch_size, progress=not args.no_progress)
    print(f"decoded {len(paths)} images into {args.output}")
    return EXIT_OK


def decode_main(argv: Sequence[str]) -> int:
    """``discotok decode TOKENIZER_DIR IDS -o OUTPUT_DIR``; returns the exit status."""
    prog = "discotok decode"
    parser = _parser(
        prog,
        "Decode ids (an ids.npy file, or the folder holding it and its manifest.json) into\n"
        "one PNG per row. All ids are checked against the tokenizer before anything is decoded.",
        EXIT_HELP,
    )
    parser.add_argument("ids", metavar="IDS", help="ids.npy or the folder written by `discotok encode`")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT_DIR", help="where the PNGs go")
    _add_common(parser)
    return _run(prog, parser, _decode_command, argv)
