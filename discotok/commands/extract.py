"""``discotok encode`` and ``discotok decode``: their arguments, and the extraction functions they call."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from discotok.commands.args import (
    EXIT_OK,
    EXIT_SKIPPED,
    add_common,
    make_parser,
    positive_float,
    positive_int,
    report_skipped,
    run_command,
)
from discotok.defaults import DEFAULT_MAX_DURATION, DEFAULT_MAX_PIXELS, FORMATS

EXIT_HELP = """exit status:
  0  everything succeeded
  1  error, as one line on stderr: tokenizer directory missing, incomplete or refused,
     missing input, bad ids, options the tokenizer does not take
  2  bad command-line usage
"""


def _encode_command(args: argparse.Namespace) -> int:
    from discotok.extraction.encode import describe_report, extract

    if args.bandwidth is not None:
        from discotok.tokenizers.tokenizer import Tokenizer

        if args.depth is not None:
            raise ValueError("give --depth or --bandwidth, not both")
        args.depth = Tokenizer.from_pretrained(args.tokenizer).modality.depth_for_bandwidth(args.bandwidth)
    prog = "discotok encode"
    if args.image_size is not None and len(args.image_size) > 2:
        raise ValueError(f"--image-size takes H or H W, got {len(args.image_size)} values")
    report = extract(
        args.tokenizer, args.inputs, args.output, format=args.format, shard_size=args.shard_size,
        batch_size=args.batch_size, image_size=args.image_size, max_seconds=args.max_seconds,
        max_duration=args.max_duration, max_pixels=args.max_pixels,
        num_tokens=args.num_tokens, depth=args.depth, precision=args.precision,
        recursive=not args.no_recursive, workers=args.workers, devices=args.devices, accelerator=args.accelerator,
        strategy=args.strategy, overwrite=args.overwrite, progress=not args.no_progress,
        device=args.device if args.devices == 1 else "cpu",
    )
    if report.rank != 0:
        return EXIT_OK
    report_skipped(prog, report.skipped)
    print(describe_report(report))
    return EXIT_SKIPPED if report.skipped else EXIT_OK


def encode_main(argv: Sequence[str]) -> int:
    """``discotok encode TOKENIZER_DIR INPUT... -o OUTPUT_DIR``; returns the exit status."""
    prog = "discotok encode"
    parser = make_parser(
        prog,
        "Encode every input into OUTPUT_DIR: ids in shards (ids-00000.npy, ...) and manifest.json\n"
        "(row -> source, skipped inputs, token layout). Re-running the same command resumes:\n"
        "finished shards are kept. Images are converted to RGB, resized to cover the image size\n"
        "and centre cropped. Audio (wav, flac, ogg, ...) is read at the tokenizer's sample rate and\n"
        "channels (resampled, mixed down or duplicated); each clip keeps its own frame count\n"
        "(rows padded with -1, the manifest gives each item's frames and samples). One run at a time\n"
        "per OUTPUT_DIR (lock file .discotok.lock); a resumed run removes the temporaries of a killed one.\n"
        "A skipped input's name is printed escaped (Python repr) when it holds control characters.",
        EXIT_HELP + "  3  some inputs were skipped (listed on stderr with the reason and in the manifest)\n",
    )
    parser.add_argument("tokenizer", metavar="TOKENIZER_DIR", help="folder with config.json and model.safetensors")
    parser.add_argument("inputs", metavar="INPUT", nargs="+",
                        help="folder (searched recursively), text file of paths, WebDataset .tar shards or a "
                             "brace pattern such as 'data-{000..009}.tar'")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT_DIR", help="for the ids shards and manifest.json")
    parser.add_argument("--format", choices=FORMATS, default="npy",
                        help="npy arrays, safetensors, or WebDataset tars with each sample's ids under its key")
    parser.add_argument("--shard-size", type=positive_int, default=1000, help="inputs per shard (default 1000)")
    parser.add_argument(
        "--image-size", type=positive_int, nargs="+", metavar=("H", "W"), help="default: the tokenizer's image size"
    )
    parser.add_argument("--max-seconds", type=float, metavar="S",
                        help="audio: encode the first S seconds of each file (default: all of it)")
    parser.add_argument("--max-duration", type=positive_float, default=DEFAULT_MAX_DURATION, metavar="S",
                        help="audio: skip (with the reason) files longer than S seconds, checked from the header "
                             f"before reading (default {DEFAULT_MAX_DURATION:g}; memory grows with batch size x the "
                             "longest clip); --max-seconds crops instead")
    parser.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, metavar="P",
                        help="images: skip (with the reason) images of more than P pixels, checked from the header "
                             f"before decoding (default {DEFAULT_MAX_PIXELS}, 8192 x 8192)")
    parser.add_argument("--num-tokens", type=positive_int, metavar="K", help="keep the first K tokens (1-D tokenizers)")
    parser.add_argument("--depth", type=positive_int, metavar="K", help="residual depth to keep (RVQ tokenizers)")
    parser.add_argument("--bandwidth", type=positive_float, metavar="KBPS",
                        help="audio: the bit rate in kbps, as a depth (EnCodec's 1.5 / 3 / 6 / 12 / 24)")
    parser.add_argument("--no-recursive", action="store_true", help="only files directly in an input folder")
    parser.add_argument("--workers", type=int, default=None,
                        help="data-loading processes per device (0: in process; default: half the cores, 1 to 8)")
    parser.add_argument("--devices", type=positive_int, default=1,
                        help="processes, one per device, through Lightning DDP (default 1: no Lightning)")
    parser.add_argument("--accelerator", default="auto", help="with --devices > 1: gpu, cpu or auto")
    parser.add_argument("--strategy", default="ddp", help="with --devices > 1: Lightning strategy (default ddp)")
    parser.add_argument("--overwrite", action="store_true", help="re-encode every shard, even one of another run")
    add_common(parser)
    return run_command(prog, parser, _encode_command, argv)


def _decode_command(args: argparse.Namespace) -> int:
    from discotok.extraction.decode import decode_ids
    from discotok.tokenizers.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_pretrained(args.tokenizer, device=args.device)
    sampler = {k: v for k in ("timesteps", "guidance_scale", "seed") if (v := getattr(args, k)) is not None}
    paths = decode_ids(tokenizer, args.ids, args.output, batch_size=args.batch_size, progress=not args.no_progress,
                       sampler=sampler, precision=args.precision)
    print(f"decoded {len(paths)} {tokenizer.modality.items_noun} into {args.output}")
    return EXIT_OK


def decode_main(argv: Sequence[str]) -> int:
    """``discotok decode TOKENIZER_DIR IDS -o OUTPUT_DIR``; returns the exit status."""
    prog = "discotok decode"
    parser = make_parser(
        prog,
        "Decode ids (the folder written by `discotok encode`, or one ids file: .npy, .safetensors,\n"
        ".tar) into one PNG per row, or one wav per clip at an audio tokenizer's rate (cut to the\n"
        "clip's original length when the manifest gives it). All ids are checked against the\n"
        "tokenizer before anything is decoded. Re-running a killed decode resumes it: files already\n"
        "written are kept and the rest come out as in one run. One run at a time per OUTPUT_DIR.",
        EXIT_HELP,
    )
    parser.add_argument("tokenizer", metavar="TOKENIZER_DIR", help="folder with config.json and model.safetensors")
    parser.add_argument("ids", metavar="IDS", help="the folder written by `discotok encode`, or one ids file")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT_DIR", help="where the PNGs or wavs go")
    parser.add_argument("--timesteps", type=int, help="generative (flow) decoders: Euler steps (default: the decoder's)")
    parser.add_argument("--guidance-scale", type=float, help="generative decoders: classifier-free guidance scale")
    parser.add_argument("--seed", type=int, help="generative decoders: noise seed (batch i uses seed + i)")
    add_common(parser)
    return run_command(prog, parser, _decode_command, argv)
