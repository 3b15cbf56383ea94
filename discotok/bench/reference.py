"""``discotok bench reference titok|encodec``: ours beside the reference code on the same weights, interleaved.

The reference model is built by its publisher's code at published size with random weights (TiTok: from the
bytedance/1d-tokenizer checkout ``--reference-path`` names, ``discotok.bench.reference_titok``; EnCodec: the
``encodec`` package, ``discotok.bench.reference_encodec``) and converted in memory by our converter, the code
``discotok convert`` runs. Both code the same batch (``Modality.bench_input``: seeded random images at the model's
size, or speech clips), in one process with the same torch threads: first the fraction of our ids equal to the
reference's at each precision and the largest difference of the two decodes of the same ids (fp32), then
``encode`` and ``decode`` timed with ``interleaved_ms`` (ours fp32, reference fp32, ours bf16, reference bf16 in
turn within every round, median of ``repeats`` rounds after one warm-up round, wall and process CPU time), so that
the load of a shared machine falls on all of them alike and the ratios hold where the absolute times do not.
Ours runs with ``precision="bf16"`` (encoder and decoder under autocast, the quantizer's search in fp32); the
reference under ``torch.autocast(device, torch.bfloat16)`` around its own encode / decode: each reference module's
``BF16`` says what that makes of it. Ratios are reference time / our time (above 1: ours faster); the bf16 rows
also give the reference's fp32 time over our bf16 time. The load average (``os.getloadavg``) is recorded before
and after each model; the ``discotok`` command sets glibc's malloc as ``MALLOC_MMAP_MAX_=0`` with a high trim
threshold would (``discotok.allocator``; the row's ``allocator``). A benchmark, never a timed test.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType

import torch
from torch import Tensor

from discotok.bench.precision import interleaved_ms, timing_fields
from discotok.bench.quantizers import allocator_in_effect, measured_rows
from discotok.bench.tokenizer import num_params
from discotok.commands.bench import bench_parser
from discotok.markdown import markdown_table
from discotok.nn.precision import precision_context
from discotok.tokenizers.tokenizer import Tokenizer

REFERENCES = {"titok": "discotok.bench.reference_titok", "encodec": "discotok.bench.reference_encodec"}
STEPS = ("encode", "decode")


@dataclass
class Pair:
    """Our converted tokenizer and the reference model it was converted from, as two ways of coding one batch."""

    label: str
    ours: Tokenizer
    x: Tensor  # the batch both code (``Modality.bench_input``)
    rates: dict  # its figures (image size, or seconds and rate)
    reference_encode: Callable[[Tensor], Tensor]  # our inputs -> ids in our layout, by the reference's code
    reference_decode: Callable[[Tensor], Tensor]  # ids in our layout -> outputs in our range, by the reference's code
    reference_params_m: float
    encode_options: dict = field(default_factory=dict)  # our ``encode``'s keyword arguments (e.g. ``depth``)


def reference_module(name: str) -> ModuleType:
    """The module of reference ``name``: ``labels(args)`` (its models), ``build(args, label) -> Pair``, and the texts
    ``REFERENCE`` (what it is) and ``BF16`` (what autocast makes of it)."""
    if name not in REFERENCES:
        raise ValueError(f"reference must be one of {', '.join(REFERENCES)}; got {name!r}")
    return importlib.import_module(REFERENCES[name])


def in_precision(fn: Callable[[Tensor], Tensor], precision: str, device: torch.device) -> Callable[[Tensor], Tensor]:
    """``fn`` of a reference, to be called under ``precision`` (bf16: autocast on ``device``)."""

    def run(x: Tensor) -> Tensor:
        with precision_context(precision, device):
            return fn(x)

    return run


def agreement(a: Tensor, b: Tensor) -> float:
    """The fraction of equal ids."""
    return (a == b).double().mean().item()


def compare(pair: Pair, precisions: Sequence[str], repeats: int, warmup: int = 1) -> dict:
    """Ids agreement (ours with the reference's at each precision, and each side's with its own fp32 ids), decode
    agreement (fp32, the same ids) and interleaved encode / decode timings of ``pair`` on its batch."""
    tok, x = pair.ours.eval(), pair.x
    device = x.device
    row: dict = {"precisions": list(precisions), "load_before": os.getloadavg()[0]}
    encodes: dict[str, Callable[[], Tensor]] = {}
    decodes: dict[str, Callable[[], Tensor]] = {}
    with torch.inference_mode():
        ids = tok.encode(x, **pair.encode_options)
        reference_ids = pair.reference_encode(x)
        for p in precisions:
            ours = tok.encode(x, precision=p, **pair.encode_options)
            theirs = in_precision(pair.reference_encode, p, device)(x)
            if ours.shape != theirs.shape:
                raise ValueError(f"{pair.label}: our ids are {tuple(ours.shape)}, "
                                 f"the reference's {tuple(theirs.shape)}")
            row[f"ids_equal_{p}"] = agreement(ours, theirs)
            row[f"ids_equal_own_fp32_ours_{p}"] = agreement(ours, ids)
            row[f"ids_equal_own_fp32_reference_{p}"] = agreement(theirs, reference_ids)
            encodes[f"ours_{p}"] = lambda p=p: tok.encode(x, precision=p, **pair.encode_options)
            encodes[f"reference_{p}"] = lambda f=in_precision(pair.reference_encode, p, device): f(x)
            decodes[f"ours_{p}"] = lambda p=p: tok.decode(ids, precision=p)
            decodes[f"reference_{p}"] = lambda f=in_precision(pair.reference_decode, p, device): f(ids)
        row["distinct_ids"] = int(ids.unique().numel())
        row["decode_max_abs_diff"] = (tok.decode(ids) - pair.reference_decode(ids)).abs().max().item()
        for step, fns in (("encode", encodes), ("decode", decodes)):
            row |= timing_fields(step, interleaved_ms(fns, repeats, warmup, device=device))
    for step in STEPS:
        for p in precisions:
            for clock in ("", "cpu_"):
                row[f"{step}_{clock}x_{p}"] = row[f"{step}_{clock}ms_reference_{p}"] / row[f"{step}_{clock}ms_ours_{p}"]
        if set(precisions) >= {"fp32", "bf16"}:
            for clock in ("", "cpu_"):
                row[f"{step}_{clock}x_bf16_vs_reference_fp32"] = (row[f"{step}_{clock}ms_reference_fp32"]
                                                                  / row[f"{step}_{clock}ms_ours_bf16"])
    row["load_after"] = os.getloadavg()[0]
    return row


def measure_one(args: argparse.Namespace, label: str) -> dict:
    """The row of model ``label`` of the reference ``args.reference`` (both models freed on return)."""
    module = reference_module(args.reference)
    pair = module.build(args, label)
    return {"reference": module.REFERENCE, "config": pair.label, "modality": pair.ours.modality.name,
            "batch_size": int(pair.x.shape[0]), "threads": torch.get_num_threads(), "allocator": allocator_in_effect(),
            "repeats": args.repeats, "params_m_ours": num_params(pair.ours) / 1e6,
            "params_m_reference": pair.reference_params_m, "reference_bf16": module.BF16, **pair.rates,
            **compare(pair, args.precision, args.repeats)}


def measure(args: argparse.Namespace) -> Iterator[dict]:
    """One row per model of the reference ``args.reference``, each built, compared and freed in turn."""
    torch.set_num_threads(args.threads)
    for label in reference_module(args.reference).labels(args):
        yield measure_one(args, label)
        print(f"done: {label}", file=sys.stderr, flush=True)


def format_table(rows: Sequence[dict]) -> str:
    """One markdown table, a line per model and precision: our and the reference's ms, the ratios (wall; CPU time in
    brackets), ids agreement; then the conditions."""
    header = ["config", "P", "params M ours / ref", "encode ms ours / ref", "encode ref/ours (CPU)",
              "decode ms ours / ref", "decode ref/ours (CPU)", "ours P vs ref fp32: enc / dec (CPU)", "ids = ref",
              "ids = own fp32: ours / ref", "decode max abs diff (fp32)"]
    lines = []
    for r in rows:
        for p in r["precisions"]:
            cells = [r["config"], p, f"{r['params_m_ours']:.1f} / {r['params_m_reference']:.1f}"]
            for step in STEPS:
                cells += [f"{r[f'{step}_ms_ours_{p}']:.1f} / {r[f'{step}_ms_reference_{p}']:.1f}",
                          f"{r[f'{step}_x_{p}']:.2f}x ({r[f'{step}_cpu_x_{p}']:.2f}x)"]
            vs = [f"{r[f'{step}_x_bf16_vs_reference_fp32']:.2f}x ({r[f'{step}_cpu_x_bf16_vs_reference_fp32']:.2f}x)"
                  for step in STEPS if p == "bf16" and f"{step}_x_bf16_vs_reference_fp32" in r]
            cells += [" / ".join(vs) or "-",
                      f"{r[f'ids_equal_{p}']:.4f}",
                      f"{r[f'ids_equal_own_fp32_ours_{p}']:.4f} / {r[f'ids_equal_own_fp32_reference_{p}']:.4f}",
                      f"{r['decode_max_abs_diff']:.2e}"]
            lines.append(cells)
    first = rows[0]
    size = (f"{first['image_size'][0]}x{first['image_size'][1]} random images" if "image_size" in first
            else f"clips of {first['seconds']:g} s of speech at {first['sample_rate']} Hz")
    notes = [f"Reference: {first['reference']}. Batch {first['batch_size']} ({size}), threads {first['threads']}, "
             f"allocator {first['allocator']}; medians of {first['repeats']} rounds, ours and the reference "
             f"({', '.join(first['precisions'])}) in turn within each round; ratio = reference time / our time (above "
             "1: ours faster).",
             f"bf16: ours precision=\"bf16\"; the reference {first['reference_bf16']}.",
             "Load average (1 min) before -> after: " + ", ".join(
                 f"{r['config']} {r['load_before']:.2f} -> {r['load_after']:.2f}" for r in rows) + "."]
    return "\n".join([markdown_table(header, lines), "", *notes])


def main(argv: list[str] | None = None) -> int:
    """CLI: ``discotok bench reference titok --reference-path DIR [--configs S-128 B-64 L-32] [--precision fp32
    bf16] ...`` or ``discotok bench reference encodec [--bandwidth 6] ...``."""
    args = bench_parser("reference").parse_args(argv)
    return measured_rows(f"reference {args.reference}", lambda: list(measure(args)), format_table, args.json)


if __name__ == "__main__":
    sys.exit(main())
