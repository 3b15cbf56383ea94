"""``discotok quantize-after TOKENIZER_DIR data=SOURCE``: post-training quantization of a continuous tokenizer."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from discotok.commands.args import EXIT_OK, device_arg, make_parser, positive_int, run_command
from discotok.defaults import DEFAULT_SAMPLE_CROPS, FIT_METHODS

EXIT_HELP = """exit status:
  0  the quantized tokenizer was written
  1  error, as one line on stderr: tokenizer refused or not continuous, no readable images, OUT exists
  2  bad command-line usage
"""


def _levels(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"levels must be at least 2, got {value}")
    return value


def _command(args: argparse.Namespace) -> int:
    from discotok.quantize_after import quantize_after

    key, _, data = args.data.partition("=")
    if key != "data" or not data:
        raise ValueError(f"give the data as data=SOURCE (a folder, list, shards or sample_photos), got {args.data!r}")
    record = quantize_after(
        args.tokenizer, data, args.output, args.levels, args.method, args.num_images, args.batch_size,
        args.iterations, args.device, args.overwrite, progress=not args.no_progress,
    )
    for item in record["skipped"]:
        print(f"discotok quantize-after: skipped {item['source']}: {item['error']}", file=sys.stderr)
    for key in ("output", "method", "levels", "images", "latents", "latent_variance", "uniform_grid_mse", "quantization_mse"):
        print(f"{key}: {json.dumps(record[key])}")
    return EXIT_OK


def quantize_after_main(argv: Sequence[str]) -> int:
    """``discotok quantize-after``; returns the exit status."""
    prog = "discotok quantize-after"
    parser = make_parser(
        prog,
        "Post-training quantization: encode DATA with a continuous tokenizer (trained with quantizer=identity),\n"
        "fit a per-dimension scalar quantizer to its latents and write a discrete tokenizer to OUT\n"
        "(same encoder and decoder, quantizer 'scalar'), without retraining.",
        EXIT_HELP,
    )
    parser.add_argument("tokenizer", metavar="TOKENIZER_DIR", help="a continuous tokenizer folder")
    parser.add_argument("data", metavar="data=SOURCE",
                        help="images to fit on: a folder, text file of paths, WebDataset shards, or sample_photos")
    parser.add_argument("-o", "--output", metavar="OUT", help="the new tokenizer folder (default: TOKENIZER_DIR-quantized)")
    parser.add_argument("--levels", type=_levels, nargs="+", default=[8], metavar="L",
                        help="levels per latent dimension: one for all, or one per dimension (default 8)")
    parser.add_argument("--method", choices=FIT_METHODS, default="lloyd",
                        help="lloyd (Lloyd-Max, default), quantile (equal-mass bins) or uniform (FSQ with a fitted scale)")
    parser.add_argument("--num-images", type=positive_int, metavar="N",
                        help=f"the first N inputs (default: all; sample_photos: {DEFAULT_SAMPLE_CROPS} crops)")
    parser.add_argument("--iterations", type=positive_int, default=30, help="Lloyd-Max iterations (default 30)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="images per batch (default 16)")
    parser.add_argument("--device", type=device_arg, default="auto", help="cpu, cuda, cuda:1, ... (default: auto)")
    parser.add_argument("--overwrite", action="store_true", help="replace a tokenizer already in OUT")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return run_command(prog, parser, _command, argv)
