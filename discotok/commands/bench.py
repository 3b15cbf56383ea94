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
# bytedance/1d-tokenizer's published TiTok models: our short name -> its configs/infer/TiTok/NAME.yaml
TITOK_REFERENCE_CONFIGS = {"S-128": "titok_s128", "B-64": "titok_b64", "L-32": "titok_l32",
                           "BL-64-VQ8k": "titok_bl64_vq8k", "BL-128-VQ8k": "titok_bl128_vq8k",
                           "SL-256-VQ8k": "titok_sl256_vq8k"}
REFERENCE_PRECISIONS = ("fp32", "bf16")


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


def _reference(parser: argparse.ArgumentParser) -> None:
    references = parser.add_subparsers(dest="reference", required=True, metavar="{titok,encodec}")
    titok = references.add_parser(
        "titok", help="TiTok against bytedance/1d-tokenizer's code (a checkout given with --reference-path)",
        description="TiTok built by bytedance/1d-tokenizer's own code at published size (random weights), converted "
                    "in memory, both timed interleaved in one process.")
    titok.add_argument("--reference-path", metavar="DIR",
                       help="a checkout of bytedance/1d-tokenizer (its code does not install from the package index; "
                            "it needs modeling/ and configs/infer/TiTok/), e.g. `git clone "
                            "https://github.com/bytedance/1d-tokenizer DIR`")
    titok.add_argument("--configs", nargs="+", choices=list(TITOK_REFERENCE_CONFIGS), default=["S-128", "B-64", "L-32"],
                       help="published models to build (default S-128 B-64 L-32)")
    titok.add_argument("--batch-size", type=int, default=8, help="random 256x256 images per batch (default 8)")
    titok.add_argument("--repeats", type=int, default=3, help="timed rounds (median reported) after one warm-up")
    titok.add_argument("--threads", type=int, default=2, help="torch.set_num_threads, both sides (default 2)")
    encodec = references.add_parser(
        "encodec", help="EnCodec 24 kHz against the encodec package, the same weights",
        description="The encodec package's 24 kHz EnCodec (random weights), converted in memory, both timed "
                    "interleaved in one process.")
    encodec.add_argument("--bandwidth", type=float, default=6.0, help="kbps (1.5, 3, 6, 12, 24; default 6)")
    encodec.add_argument("--batch-size", type=int, default=1, help="clips per batch (default 1)")
    encodec.add_argument("--seconds", type=float, default=10.0, help="seconds of speech per clip (default 10)")
    encodec.add_argument("--repeats", type=int, default=5, help="timed rounds (median reported) after one warm-up")
    encodec.add_argument("--threads", type=int, default=1, help="torch.set_num_threads, both sides (default 1)")
    for sub in (titok, encodec):
        sub.add_argument("--precision", nargs="+", choices=REFERENCE_PRECISIONS, default=list(REFERENCE_PRECISIONS),
                         help="ours with precision=P, the reference under torch.autocast for bf16 (default fp32 bf16)")
        sub.add_argument("--json", default=None, help="also write the rows to this JSON file")


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
    'reference': ("``discotok bench reference titok|encodec``: ours beside the reference code on the same weights, "
                  "fp32 and bf16, interleaved in one process.", _reference),
    'extract': ('``discotok bench extract TOKENIZER_DIR DATA``: model-only against end-to-end extraction throughput.', _extract),
    'stream': ('``discotok bench stream TARGET``: streaming encode + decode of a causal audio codec, chunk by chunk.', _stream),
}


def bench_parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``discotok bench NAME``."""
    description, add_arguments = BENCH_ARGUMENTS[name]
    parser = argparse.ArgumentParser(prog=f"discotok bench {name}", description=description)
    add_arguments(parser)
    return parser
