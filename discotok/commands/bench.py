"""The argument parsers of ``discotok bench NAME``: no torch here, so ``discotok bench NAME --help`` answers at once;
each benchmark module imports what it measures and parses its arguments with ``bench_parser(NAME)``."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from discotok.commands.args import device_arg
from discotok.defaults import PRECISIONS

ALLOCATORS = ("default", "tuned")  # glibc malloc: as is, and MALLOC_MMAP_MAX_=0 with a high trim threshold
TITOK_CONFIGS = ("titok_s128", "titok_b64", "titok_l32")
AUDIO_CONFIGS = ("encodec_24k",)


def _tokenizer(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="*", metavar="TARGET",
                        help="a tokenizer directory (image or audio), Hydra overrides (experiment=titok_tiny "
                             "quantizer=fsq) or an experiment name (smoke, audio_tiny, ...); none: the default config")
    parser.add_argument("--batch-size", type=int, default=8, help="images, or audio clips, per batch (default 8)")
    parser.add_argument("--seconds", type=float, default=2.0, help="audio: seconds per clip (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (median reported) after one warm-up")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    parser.add_argument("--device", type=device_arg, default="auto", help="cpu, cuda, cuda:1 ... (default: auto)")
    parser.add_argument("--vs", action="append", default=[], metavar="TARGET",
                        help="another target (quoted: 'quantizer=fsq'; 'default' for the default config), "
                             "repeatable; the training steps of all targets are then timed in turns in one process")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")


def _quantizers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allocator", choices=[*ALLOCATORS, "both"], default="both",
                        help="glibc malloc setting to run under (each in its own process)")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per case (median reported)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")


def _per_config(parser: argparse.ArgumentParser, configs: tuple[str, ...], what: str, repeats: int) -> None:
    """The options of the benchmarks that time experiment configs, each config and allocator in its own process."""
    parser.add_argument("--configs", nargs="+", default=list(configs), help=f"{what} to time")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed runs (median reported) after one warm-up")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--allocator", choices=[*ALLOCATORS, "both"], default="both",
                        help="glibc malloc setting (each config and setting in its own process)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)


def _titok(parser: argparse.ArgumentParser) -> None:
    _per_config(parser, TITOK_CONFIGS, "experiment configs", repeats=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--compile", action="store_true", help="torch.compile the encoder and decoder")


def _audio(parser: argparse.ArgumentParser) -> None:
    _per_config(parser, AUDIO_CONFIGS, "audio experiment configs", repeats=5)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the clip encoded and decoded")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")


def _precision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help="tokenizer directories or experiment names (smoke, titok_s128, encodec_24k, ...), each "
                             "timed in turn; none: the default config")
    parser.add_argument("--data", help="real inputs: a folder, list or shards (default: random images / speech)")
    parser.add_argument("--batch-size", type=int, default=8, help="images, or audio clips, per batch (default 8)")
    parser.add_argument("--seconds", type=float, default=2.0, help="audio: seconds per clip (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median reported) after one warm-up")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    parser.add_argument("--device", type=device_arg, default="auto", help="cpu, cuda, cuda:1 ... (default: auto)")
    parser.add_argument("--no-train", action="store_true", help="leave out the training step")
    parser.add_argument("--against", choices=("bf16", "int8"), default="bf16",
                        help="the precision compared with fp32 (default bf16; int8: CPU, inference only)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")


def _extract(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tokenizer", metavar="TOKENIZER_DIR")
    parser.add_argument("data", metavar="DATA", help="folder, list of paths (plain files; tar members are left out)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="loader processes (default: discotok encode's)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the command gets OMP_NUM_THREADS)")
    parser.add_argument("--limit", type=int, default=None, help="the first N inputs (default: all)")
    parser.add_argument("--json", default=None, help="also write the row to this JSON file")


def _stream(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="+", metavar="TARGET", help="a tokenizer directory or Hydra overrides")
    parser.add_argument("--chunk-ms", type=float, default=20.0, help="milliseconds of audio per chunk (default 20)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the streamed clip (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--json", default=None, help="also write the row to this JSON file")


BENCH_ARGUMENTS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    'tokenizer': ("``discotok bench tokenizer TARGET``: encode and decode throughput, a training step's time, peak memory.", _tokenizer),
    'quantizers': ('``discotok bench quantizers``: our quantizers beside vector-quantize-pytorch, per allocator.', _quantizers),
    'titok': ("``discotok bench titok``: the TiTok configs' encode, decode and training step beside the reference.", _titok),
    'audio': ('``discotok bench audio``: real-time factor of encode and decode of 10 s of audio, per allocator.', _audio),
    'precision': ('``discotok bench precision TARGET...``: fp32 against bf16 (or int8) side by side, interleaved in one process.', _precision),
    'extract': ('``discotok bench extract TOKENIZER_DIR DATA``: model-only against end-to-end extraction throughput.', _extract),
    'stream': ('``discotok bench stream TARGET``: streaming encode + decode of a causal audio codec, chunk by chunk.', _stream),
}


def bench_parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``discotok bench NAME``."""
    description, add_arguments = BENCH_ARGUMENTS[name]
    parser = argparse.ArgumentParser(prog=f"discotok bench {name}", description=description)
    add_arguments(parser)
    return parser
