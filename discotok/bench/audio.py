"""``discotok bench audio``: real-time factor of encode and decode of 10 s of audio, per allocator.

Each (allocator, config) pair runs in its own child process
(``python -m discotok.bench.audio --child --configs NAME --allocator X --json OUT``), since glibc
reads its malloc settings at start. A child composes ``experiment=NAME`` (default ``encodec_24k``:
the EnCodec-like 24 kHz model, RVQ 8 x 1024, LSTM), builds it with random weights (the cost
does not depend on the weights), and times with ``threads`` torch threads, in eval and
inference mode, the median of ``repeats`` runs after one warm-up of: ``encode`` of one
``seconds``-long clip (espeak-ng speech when installed, else synthetic audio, at the model's
rate) and ``decode`` of its ids. RTF = compute seconds / audio seconds (below 1: faster than
real time). ``--device cuda`` times on a GPU (synchronised). A benchmark, never a timed test.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from discotok.commands.bench import AUDIO_CONFIGS as CONFIGS, bench_parser
from discotok.bench.quantizers import ALLOCATORS, allocator_in_effect, emit_rows, run_configs
from discotok.bench.tokenizer import codec_ms, compose_tokenizer, num_params
from discotok.data.speech import speech_clip
from discotok.markdown import markdown_table
from discotok.tokenizers.tokenizer import Tokenizer



def build_tokenizer(experiment: str, seed: int = 0) -> Tokenizer:
    """Compose ``experiment=NAME`` with Hydra and build its audio tokenizer with random weights."""
    tok = compose_tokenizer([f"experiment={experiment}", "data.source=unused"], seed)
    if not tok.modality.waveform:
        raise ValueError(f"experiment {experiment!r} is not an audio tokenizer")
    return tok


def measure(
    experiment: str, seconds: float = 10.0, repeats: int = 5, threads: int = 2, device: str = "cpu"
) -> dict:
    """Time encode and decode of one clip in this process; one result row."""
    torch.set_num_threads(threads)
    tok = build_tokenizer(experiment).to(device).eval()
    audio = tok.modality
    x = speech_clip(audio.sample_rate, audio.channels, seconds).to(device)
    return {
        "config": experiment, "allocator": allocator_in_effect(), "device": device, "threads": threads,
        "seconds": seconds, "sample_rate": audio.sample_rate, "repeats": repeats,
        "params_m": num_params(tok) / 1e6, "bits_per_second": audio.bits_per_second(), **audio.bench_figures(x, codec_ms(tok, x, repeats)),
    }


def format_table(rows: Sequence[dict]) -> str:
    """A markdown table: config, allocator, device, encode/decode ms, RTF and times faster than real time."""
    header = ["config", "allocator", "device", "threads", "audio s", "encode ms", "encode RTF", "decode ms",
              "decode RTF"]
    return markdown_table(header, [
        [r["config"], r["allocator"], r["device"], r["threads"], f"{r['seconds']:g}", f"{r['encode_ms']:.0f}",
         f"{r['encode_rtf']:.3f} ({1 / r['encode_rtf']:.1f}x real time)", f"{r['decode_ms']:.0f}",
         f"{r['decode_rtf']:.3f} ({1 / r['decode_rtf']:.1f}x real time)"] for r in rows])


def main(argv: list[str] | None = None) -> int:
    """CLI: ``discotok bench audio [--configs encodec_24k] [--seconds 10] [--repeats 5] [--threads 2]
    [--allocator default|tuned|both] [--device cpu|cuda] [--json PATH]``."""
    parser = bench_parser("audio")
    args = parser.parse_args(argv)
    if args.child:
        rows = [measure(name, args.seconds, args.repeats, args.threads, args.device) for name in args.configs]
        Path(args.json).write_text(json.dumps({"rows": rows}))
        return 0
    common = ["--seconds", str(args.seconds), "--repeats", str(args.repeats), "--threads", str(args.threads),
              "--device", args.device]
    rows = run_configs("discotok.bench.audio", args.configs, args.allocator, common)
    return emit_rows(format_table(rows), rows, args.json)


if __name__ == "__main__":
    sys.exit(main())
