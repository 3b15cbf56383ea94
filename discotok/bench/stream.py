"""``discotok bench stream TARGET``: streaming encode + decode of a causal audio codec, chunk by chunk.

TARGET is a tokenizer directory (ours or `discotok convert`'s) or a named config (``experiment=audio_seanet_tiny
encoder.causal=true decoder.causal=true``). A clip of ``seconds`` of speech (espeak-ng, else synthetic) is
fed in chunks of ``chunk_ms``; each chunk's ids are decoded at once. Reported: the algorithmic latency
(one hop, and how many samples the first frame waited for), the per-chunk real-time factor (compute time
of encode + decode of the chunk over its duration; median and worst; below 1 keeps up with real time),
the whole stream's RTF beside the offline encode + decode of the same clip, and that the streamed ids
equal the offline ones. A benchmark, never a timed test.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence

import torch

from discotok.commands.bench import bench_parser
from discotok.bench.quantizers import allocator_in_effect, measured_rows
from discotok.bench.tokenizer import load_target
from discotok.data.speech import speech_clip
from discotok.markdown import markdown_table


def measure(target: Sequence[str], chunk_ms: float = 20.0, seconds: float = 5.0, threads: int = 2) -> dict:
    """One row for ``target`` (see the module docstring)."""
    torch.set_num_threads(threads)
    tok, label = load_target(target)
    audio = tok.modality
    if not audio.waveform:
        raise ValueError(f"{label}: streaming is for audio tokenizers")
    x = speech_clip(audio.sample_rate, audio.channels, seconds)
    chunk = max(1, round(chunk_ms / 1e3 * audio.sample_rate))
    enc, dec = audio.encode_stream(), audio.decode_stream()
    rtfs, parts, first_at = [], [], None
    with torch.inference_mode():
        for start in range(0, x.shape[-1], chunk):
            piece = x[..., start : start + chunk]
            t0 = time.perf_counter()
            ids = enc.push(piece)
            dec.push(ids)
            rtfs.append((time.perf_counter() - t0) / (piece.shape[-1] / audio.sample_rate))
            if first_at is None and ids.shape[1]:
                first_at = start + piece.shape[-1]
            parts.append(ids)
        parts.append(enc.flush())
        streamed = torch.cat(parts, dim=1)
        t0 = time.perf_counter()
        offline = tok.encode(x)
        tok.decode(offline)
        offline_rtf = (time.perf_counter() - t0) / seconds
    return {
        "target": label, "sample_rate": audio.sample_rate, "hop": audio.hop_length, "chunk_ms": chunk_ms,
        "seconds": seconds, "threads": threads, "allocator": allocator_in_effect(),
        "latency_ms": 1e3 * audio.hop_length / audio.sample_rate,
        "first_frame_after_ms": None if first_at is None else 1e3 * first_at / audio.sample_rate,
        "chunk_rtf_median": statistics.median(rtfs), "chunk_rtf_max": max(rtfs), "stream_rtf": sum(rtfs) / len(rtfs),
        "offline_rtf": offline_rtf, "ids_equal_offline": bool(torch.equal(streamed, offline)),
    }


def format_table(rows: Sequence[dict]) -> str:
    header = ["target", "rate", "hop", "chunk ms", "latency ms", "first frame after ms", "chunk RTF median / max",
              "stream RTF", "offline RTF", "ids = offline"]
    return markdown_table(header, [
        [r["target"], r["sample_rate"], r["hop"], f"{r['chunk_ms']:g}", f"{r['latency_ms']:.1f}",
         f"{r['first_frame_after_ms']:.1f}", f"{r['chunk_rtf_median']:.3f} / {r['chunk_rtf_max']:.3f}",
         f"{r['stream_rtf']:.3f}", f"{r['offline_rtf']:.3f}", r["ids_equal_offline"]] for r in rows])


def main(argv: list[str] | None = None) -> int:
    """CLI: ``discotok bench stream TARGET... [--chunk-ms 20] [--seconds 5] [--threads 2] [--json PATH]``."""
    parser = bench_parser("stream")
    args = parser.parse_args(argv)
    return measured_rows("stream", lambda: [measure(args.target, args.chunk_ms, args.seconds, args.threads)],
                         format_table, args.json)


if __name__ == "__main__":
    sys.exit(main())
