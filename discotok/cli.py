"""``discotok train | encode | decode | eval | convert | quantize-after | bench``.

Each subcommand lives in its own module and takes the remaining arguments; ``train``
passes them to Hydra, so overrides, ``-m`` sweeps and ``--cfg job`` work as in any
Hydra app.
"""

from __future__ import annotations

import sys

USAGE = """usage: discotok <command> [args...]

commands:
  train           train a tokenizer (Hydra overrides, e.g. quantizer=fsq; -m for sweeps)
  encode          images or audio (folders, lists of paths, WebDataset shards) -> sharded ids + manifest
  decode          ids -> PNG images or wav files
  eval            images: PSNR, SSIM, LPIPS, rFID/pFID; audio: SI-SNR, mel/STFT distance, PESQ/STOI;
                  codebook usage, bit rates, timings -> report + plots
  convert         a publisher's checkpoint (dac, encodec, snac, mimi, transformers, titok, flextok,
                  llamagen, open_magvit2, ibq, cosmos, chameleon, wavtokenizer) -> a tokenizer directory
  quantize-after  a continuous tokenizer (quantizer=identity) + data -> a discrete tokenizer
  bench           benchmarks (e.g. `discotok bench tokenizer experiment=smoke`, `discotok bench quantizers`)

`discotok <command> --help` tells more."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``discotok`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    from discotok.allocator import tune_glibc_malloc

    tune_glibc_malloc()  # big temporaries stay mapped between batches (discotok/allocator.py)
    if command == "train":
        from discotok.train.app import main as run
    elif command == "encode":
        from discotok.commands.extract import encode_main as run
    elif command == "decode":
        from discotok.commands.extract import decode_main as run
    elif command == "eval":
        from discotok.commands.evaluate import eval_main as run
    elif command == "convert":
        from discotok.commands.convert import convert_main as run
    elif command == "quantize-after":
        from discotok.commands.quantize_after import quantize_after_main as run
    elif command == "bench":
        from discotok.bench import main as run
    else:
        print(f"discotok: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return run(rest)


if __name__ == "__main__":
    sys.exit(main())
