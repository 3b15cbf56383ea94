"""``discotok bench titok``: the TiTok configs' encode, decode and training step beside the reference.

Each (allocator, config) pair runs in its own child process
(``python -m discotok.bench.titok --child --configs NAME --allocator X --json OUT``) so that
glibc's malloc setting and the peak-RSS reading (``ru_maxrss``) belong to that one config.
A child composes ``experiment=NAME`` with Hydra, builds the tokenizer with random init at the
config's image size and times, with ``threads`` torch threads (median of ``repeats`` after one
warm-up): ``encode`` and ``decode(ids)`` in eval/inference mode, and one training step (train-mode
forward, MSE + quantizer loss, backward, AdamW on the whole tokenizer). Our decoder ends in a
patch head to pixels (in the recipes the reference's 2*width tanh MLP head), so its ViT decoder
*is* the full decode: there is no separate pixel decoder.
The reference figures are bytedance/1d-tokenizer's, from issue 3. A benchmark, never a timed test.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from discotok.commands.bench import TITOK_CONFIGS as CONFIGS, bench_parser
from discotok.bench.quantizers import ALLOCATORS, allocator_in_effect, emit_rows, run_configs
from discotok.bench.tokenizer import compose_tokenizer, num_params, timings
from discotok.markdown import markdown_table
from discotok.tokenizers.tokenizer import Tokenizer

# bytedance/1d-tokenizer at 256x256, batch 8, 2 threads (issue 3): params in millions
# (encoder+quantizer, ViT decoder), encode / ViT decoder / full decode img/s, train s/img, peak GB.
REFERENCE = {
    "titok_s128": {"enc_params_m": 25.9, "dec_params_m": 27.0, "encode_img_s": 6.96, "vit_decode_img_s": 6.66,
                   "full_decode_img_s": 0.64, "train_s_per_img": 9.5, "peak_gb": 8.9},
    "titok_b64": {"enc_params_m": 86.0, "dec_params_m": 88.1, "encode_img_s": 2.61, "vit_decode_img_s": 2.56,
                  "full_decode_img_s": 0.59, "train_s_per_img": 9.9, "peak_gb": 10.8},
    "titok_l32": {"enc_params_m": 303.5, "dec_params_m": 306.8, "encode_img_s": 0.85, "vit_decode_img_s": 0.79,
                  "full_decode_img_s": 0.41, "train_s_per_img": 12.8, "peak_gb": 16.8},
}
PIXEL_HEAD = "patch head to pixels (no pixel decoder; the recipes: MLP 2*width, tanh): ViT decoder = full decode"


def build_tokenizer(experiment: str, seed: int = 0) -> tuple[Tokenizer, tuple[int, int]]:
    """Compose ``experiment=NAME`` with Hydra and build its tokenizer (random init) and image size."""
    tok = compose_tokenizer([f"experiment={experiment}"], seed)
    return tok, tok.modality.image_size


def measure(
    experiment: str, batch_size: int = 8, repeats: int = 3, threads: int = 2, compile: bool = False
) -> dict:
    """Time one config in this process; one result row (peak memory: this process's, after training)."""
    torch.set_num_threads(threads)
    tok, size = build_tokenizer(experiment)
    x = torch.rand(batch_size, 3, *size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    compiled = "off"
    if compile:
        tok.encoder.compile()
        tok.decoder.compile()
        try:
            figures = timings(tok, x, repeats, warmup=2)
            compiled = "on"
        except Exception as err:  # noqa: BLE001 - any compiler failure falls back to eager
            compiled = f"failed, eager used ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
            print(f"torch.compile failed for {experiment}; timing eager instead: {compiled}", file=sys.stderr)
            tok, _ = build_tokenizer(experiment)
    if compiled != "on":
        figures = timings(tok, x, repeats)
    return {
        "config": experiment, "allocator": allocator_in_effect(), "compile": compiled, "threads": threads,
        "batch_size": batch_size, "image_size": list(size), "repeats": repeats,
        "enc_params_m": num_params(tok.encoder, tok.quantizer) / 1e6, "dec_params_m": num_params(tok.decoder) / 1e6,
        **figures, "pixel_head": PIXEL_HEAD,
    }


def format_table(rows: Sequence[dict]) -> str:
    """A markdown table of our figures with the reference's in brackets and the ratios."""

    def cell(ours: float, ref: float | None, fmt: str, ratio: float | None = None) -> str:
        if ref is None:
            return format(ours, fmt)
        return f"{ours:{fmt}} ({ref:{fmt}}) {ratio if ratio is not None else ours / ref:.2f}x"

    header = ["config", "allocator", "compile", "params M enc+q / dec (ref)", "encode img/s (ref) ours/ref",
              "ViT dec img/s (ref) ours/ref", "full dec img/s (ref) ours/ref", "train s/img (ref) ref/ours",
              "peak GB (ref) ours/ref"]
    cells = []
    for r in rows:
        ref = REFERENCE.get(r["config"], {})
        params = f"{r['enc_params_m']:.1f} / {r['dec_params_m']:.1f}"
        if ref:
            params += f" ({ref['enc_params_m']:.1f} / {ref['dec_params_m']:.1f})"
        train_ref = ref.get("train_s_per_img")
        cells.append([
            r["config"], r["allocator"], r["compile"].split(" (")[0], params,
            cell(r["encode_img_s"], ref.get("encode_img_s"), ".2f"),
            cell(r["decode_img_s"], ref.get("vit_decode_img_s"), ".2f"),
            cell(r["decode_img_s"], ref.get("full_decode_img_s"), ".2f"),
            cell(r["train_s_per_img"], train_ref, ".3f", train_ref / r["train_s_per_img"] if train_ref else None),
            cell(r["peak_gb"], ref.get("peak_gb"), ".1f"),
        ])
    notes = [f"Ours: {PIXEL_HEAD}; training step trains the whole tokenizer (MSE + quantizer loss, AdamW).",
             "Reference: bytedance/1d-tokenizer (issue 3); full decode adds its 30.7 M MaskGIT-VQGAN pixel "
             "decoder, its training step is decoder side; its memory is the default-malloc run's."]
    notes += [f"{r['config']} ({r['allocator']}): torch.compile {r['compile']}" for r in rows
              if r["compile"].startswith("failed")]
    return "\n".join([markdown_table(header, cells), ""] + notes)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``discotok bench titok [--configs ...] [--batch-size 8] [--repeats 3] [--threads 2]
    [--allocator default|tuned|both] [--compile] [--json PATH]``."""
    parser = bench_parser("titok")
    args = parser.parse_args(argv)
    common = ["--batch-size", str(args.batch_size), "--repeats", str(args.repeats), "--threads", str(args.threads)]
    common += ["--compile"] if args.compile else []
    if args.child:
        rows = [measure(name, args.batch_size, args.repeats, args.threads, args.compile) for name in args.configs]
        Path(args.json).write_text(json.dumps({"rows": rows}))
        return 0
    rows = run_configs("discotok.bench.titok", args.configs, args.allocator, common)
    return emit_rows(format_table(rows), rows, args.json)


if __name__ == "__main__":
    sys.exit(main())
