"""``discotok eval TOKENIZER_DIR [TOKENIZER_DIR ...] DATA -o OUT``."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from discotok.commands.args import EXIT_OK, add_precision, device_arg, make_parser, positive_int, run_command
from discotok.defaults import INCEPTION_FILE, default_inception_path

EXIT_HELP = """exit status:
  0  report written
  1  error, as one line on stderr: tokenizer refused, no readable inputs, weights or extra missing
  2  bad command-line usage
"""


def _eval_command(args: argparse.Namespace) -> int:
    from discotok.eval.report import markdown_table
    from discotok.eval.run import evaluate

    if args.image_size is not None and len(args.image_size) > 2:
        raise ValueError(f"--image-size takes H or H W, got {len(args.image_size)} values")
    with warnings.catch_warnings(record=True) as caught:
        report = evaluate(
            args.tokenizers, args.data, args.output, image_size=args.image_size, max_seconds=args.max_seconds,
            num_images=args.num_images, pesq_stoi=args.pesq_stoi, precision=args.precision,
            batch_size=args.batch_size, fid=not args.no_fid, fid_weights=args.fid_weights,
            lpips_weights=args.lpips_weights, num_tokens=args.num_tokens, depths=args.depth,
            pfid_alpha=args.pfid_alpha, pfid_delta=args.pfid_delta, seed=args.seed, cache_dir=args.cache_dir,
            device=args.device, workers=args.workers, progress=not args.no_progress, baselines=not args.no_baselines,
        )
    for w in caught:  # the report's own warnings are printed below, once
        if str(w.message) not in report["warnings"]:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    for item in report["skipped"]:
        print(f"discotok eval: skipped {item['source']}: {item['error']}", file=sys.stderr)
    for message in report["warnings"]:
        print(f"discotok eval: warning: {message}", file=sys.stderr)
    print(markdown_table(report["results"]))
    for sentence in report.get("baselines", {}).get("loses_to", []):
        print(sentence)
    print(f"\nreport: {args.output}/report.json, {args.output}/report.md, plots in {args.output}/")
    return EXIT_OK


def eval_main(argv: Sequence[str]) -> int:
    """``discotok eval``; returns the exit status."""
    prog = "discotok eval"
    parser = make_parser(
        prog,
        "Evaluate tokenizers on one image set with one protocol: PSNR, SSIM, LPIPS, rFID (and pFID),\n"
        "codebook usage and perplexity, bits per image and per pixel, encode and decode time.\n"
        "Writes OUT/report.json, OUT/report.md, OUT/rate_distortion.png, OUT/quality_vs_k_*.png\n"
        "(flexible tokenizers) and OUT/reconstructions_*.png. Classical codecs run at the tokenizers'\n"
        "own rates beside them (thumbnail, JPEG, WebP; Opus, 8-bit mu-law) unless --no-baselines;\n"
        "the report names every point that loses to a codec spending no more bits.\n\n"
        "Audio tokenizers on an audio set: SI-SNR, mel and STFT distances (PESQ, STOI with\n"
        "--pesq-stoi), codebook usage and perplexity, bits per second and the encode/decode\n"
        "real-time factor at each RVQ depth (default 1, 2, 4, ..., depth); the rate-distortion\n"
        "plot is quality against bits per second, example wavs go to OUT/examples_*/.\n\n"
        "--precision bf16 (or auto, where it resolves to bf16) also runs every batch in fp32 and reports\n"
        "the fraction of ids identical to fp32's and the change in PSNR (SI-SNR for audio).",
        EXIT_HELP,
    )
    parser.add_argument("tokenizers", metavar="TOKENIZER_DIR", nargs="+", help="one or more tokenizer folders")
    parser.add_argument("data", metavar="DATA", help="folder, text file of paths or WebDataset .tar shards "
                                                     "(images, or audio for audio tokenizers)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="folder for the report and plots")
    parser.add_argument("--image-size", type=positive_int, nargs="+", metavar=("H", "W"),
                        help="evaluation size (default: the first tokenizer's image size)")
    parser.add_argument("--max-seconds", type=float, metavar="S", help="audio: the first S seconds of each clip "
                                                                         "(default: whole clips)")
    parser.add_argument("--num-images", "--num-clips", dest="num_images", type=positive_int, metavar="N",
                        help="the first N inputs (default: all)")
    parser.add_argument("--fid-weights", metavar="PATH",
                        help=f"InceptionV3 weights ({INCEPTION_FILE}; default {default_inception_path()})")
    parser.add_argument("--no-fid", action="store_true", help="leave out rFID and pFID (images; audio has no FID)")
    parser.add_argument("--lpips-weights", metavar="PATH", help="LPIPS weights (LPIPS is left out without them)")
    parser.add_argument("--num-tokens", type=positive_int, nargs="+", metavar="K",
                        help="prefix lengths to evaluate (default for flexible tokenizers: 1, 2, 4, ..., N)")
    parser.add_argument("--depth", type=positive_int, nargs="+", metavar="D",
                        help="residual depths to evaluate (RVQ; default for audio: 1, 2, 4, ..., depth)")
    parser.add_argument("--pesq-stoi", action="store_true",
                        help='audio: also PESQ and STOI (needs pip install "discotok[audio-metrics]")')
    parser.add_argument("--no-baselines", action="store_true",
                        help="leave out the classical codecs at the tokenizers' rates (images: thumbnail, JPEG, "
                             "WebP; audio: Opus, 8-bit mu-law)")
    parser.add_argument("--pfid-alpha", type=float, metavar="A", help="pFID: probability of perturbing an id")
    parser.add_argument("--pfid-delta", type=positive_int, metavar="D", help="pFID: among the D nearest codes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pFID perturbation (default 0)")
    parser.add_argument("--cache-dir", metavar="DIR", help="reference-statistics cache (default ~/.cache/discotok/fid-stats)")
    parser.add_argument("--workers", type=int, default=2, help="data-loading processes (0: in process)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="images or clips per batch (default 16)")
    parser.add_argument("--device", type=device_arg, default="auto", help="cpu, cuda, cuda:1, ... (default: auto)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_precision(parser)
    return run_command(prog, parser, _eval_command, argv)
