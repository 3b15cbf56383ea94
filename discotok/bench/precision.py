"""``discotok bench precision TARGET...``: fp32 against bf16 (or int8) side by side, interleaved in one process.

For each target (a tokenizer directory, Hydra overrides or an experiment name, as ``discotok bench
tokenizer`` takes them) it times ``encode``, ``decode`` and one training step in fp32 and in the
compared precision (``--against``: bf16, or int8, which has no training step), alternating the two
every repeat so that the load of a shared machine hits both alike, and reports the medians, the
speed-up (fp32 time / its time), the fraction of its ids identical to fp32's and the change in
headline quality (PSNR for images, SI-SNR for audio) on the same inputs. Inputs: the first ``batch_size`` items of ``--data`` (read as ``discotok encode`` reads
them), else seeded random images or espeak-ng speech. bf16 inference is ``Tokenizer.encode`` /
``decode`` with ``precision="bf16"``; the bf16 training step is Lightning's ``bf16-mixed``: forward
and loss under bf16 autocast, fp32 weights, gradients and AdamW (each precision trains its own copy
of the tokenizer). A benchmark, never a timed test.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch

from discotok.commands.bench import bench_parser
from discotok.bench.quantizers import allocator_in_effect, measured_rows
from discotok.bench.tokenizer import load_target, num_params, train_step
from discotok.eval.metrics import EvalBatch
from discotok.eval.precision import Fp32Comparison
from discotok.eval.run import headline_metric, reconstruct
from discotok.markdown import markdown_table
from discotok.nn.precision import resolve_precision
from discotok.tokenizers.tokenizer import Tokenizer

AGAINST = ("bf16", "int8")  # what fp32 is compared with; int8 is inference only


def interleaved_ms(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                   device: torch.device | None = None) -> dict[str, tuple[float, float]]:
    """(median wall, median process CPU) ms of each function, the functions called in turn within every repeat
    (after ``warmup`` rounds). On a shared machine the CPU time (all of the process's threads) is the steadier
    figure: with one thread it is the time the step would take alone."""

    def sync() -> None:
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            start, cpu = time.perf_counter(), time.process_time()
            fn()
            sync()
            times[name].append((time.perf_counter() - start, time.process_time() - cpu))
    return {name: (1e3 * statistics.median(w for w, _ in t), 1e3 * statistics.median(c for _, c in t))
            for name, t in times.items()}


def data_inputs(tok: Tokenizer, data: str, count: int) -> tuple[torch.Tensor, dict]:
    """The first ``count`` readable items of ``data`` as one batch (and ``encode``'s extra arguments)."""
    from discotok.extraction.encode import make_reader
    from discotok.extraction.sources import open_source

    reader = make_reader(tok)
    tensors = []
    for item in open_source(data, extensions=reader.tar_extensions, member=reader.tar_member).items:
        if item.problem is None:
            tensors.append(reader.load(item)[0])
        if len(tensors) == count:
            break
    if not tensors:
        raise ValueError(f"{data}: no readable {tok.modality.items_noun}")
    return reader.collate(tensors)


def compare(tok: Tokenizer, x: torch.Tensor, extra: dict, repeats: int, train: bool = True,
            against: str = "bf16") -> dict:
    """Interleaved timings of encode, decode and (bf16) a training step in fp32 and ``against``, ids agreement
    and quality change."""
    if against not in AGAINST:
        raise ValueError(f"against must be one of {', '.join(AGAINST)}; got {against!r}")
    device = x.device
    precisions = ("fp32", against)
    row: dict = {"precision": against}
    # the training step first: the VQ search's scratch buffer made under inference mode cannot be written outside it
    if train and against == "bf16":
        steps = {p: train_step(copy.deepcopy(tok), x, p) for p in precisions}
        row |= timing_fields("train", interleaved_ms(steps, repeats, device=device))
    tok.eval()
    with torch.inference_mode():
        encoded = {p: tok.encode(x, return_layout=True, precision=p, **extra) for p in precisions}
        encodes = {p: (lambda p=p: tok.encode(x, precision=p, **extra)) for p in precisions}
        decodes = {p: (lambda p=p: reconstruct(tok, *encoded[p], x, extra, p)) for p in precisions}
        row |= timing_fields("encode", interleaved_ms(encodes, repeats, device=device))
        row |= timing_fields("decode", interleaved_ms(decodes, repeats, device=device))
        lengths = extra.get("lengths")
        frames = tok.modality.valid_frames(lengths)
        batches = {p: EvalBatch(x.cpu(), decodes[p]().float().cpu(), encoded[p][0].cpu(), lengths, frames)
                   for p in precisions}
    quality = headline_metric(tok)
    comparison = Fp32Comparison(quality)
    comparison.update(batches[against], batches["fp32"])
    quality.update(batches[against])
    row |= {"quality": quality.name, f"{quality.name}_{against}": quality.compute()[quality.name]}
    row |= comparison.compute({quality.name: row[f"{quality.name}_{against}"]})
    for step in ("train", "encode", "decode"):
        if f"{step}_ms_fp32" in row:
            row[f"{step}_speedup"] = row[f"{step}_ms_fp32"] / row[f"{step}_ms_{against}"]
            row[f"{step}_speedup_cpu"] = row[f"{step}_cpu_ms_fp32"] / row[f"{step}_cpu_ms_{against}"]
    return row


def timing_fields(step: str, timings: dict[str, tuple[float, float]]) -> dict[str, float]:
    """``{step}_ms_{precision}`` (wall) and ``{step}_cpu_ms_{precision}`` (process CPU) of ``interleaved_ms``."""
    fields = {}
    for precision, (wall, cpu) in timings.items():
        fields[f"{step}_ms_{precision}"] = wall
        fields[f"{step}_cpu_ms_{precision}"] = cpu
    return fields


def measure(target: Sequence[str], data: str | None = None, batch_size: int = 8, repeats: int = 5,
            threads: int = 2, seconds: float = 2.0, device: str = "cpu", train: bool = True,
            against: str = "bf16") -> dict:
    """One row: fp32 and ``against`` timings, speed-ups, ids agreement and quality change for one target."""
    torch.set_num_threads(threads)
    tok, label = load_target(target)
    tok = tok.to(device)
    x, rates = tok.modality.bench_input(batch_size, seconds)
    extra: dict = {}
    if data is not None:
        x, extra = data_inputs(tok, data, batch_size)
    x = x.to(device)
    return {"target": label, "modality": tok.modality.name, "inputs": data or "random images / speech",
            "device": str(device), "auto": resolve_precision("auto", device), "allocator": allocator_in_effect(),
            "threads": threads, "batch_size": int(x.shape[0]), "repeats": repeats, "params_m": num_params(tok) / 1e6,
            **rates, **compare(tok, x, extra, repeats, train, against)}


def format_table(rows: Sequence[dict]) -> str:
    """A markdown table: per target and compared precision P, fp32 / P ms and the speed-up of each step, ids
    agreement, quality change."""
    header = ["target", "P", "batch", "encode ms fp32 / P (x; CPU ms)", "decode ms fp32 / P (x; CPU ms)",
              "train step ms fp32 / P (x; CPU ms)", "ids = fp32", "quality fp32 -> P"]

    def cell(r: dict, step: str) -> str:
        p = r["precision"]
        if f"{step}_ms_fp32" not in r:
            return "-"
        return (f"{r[f'{step}_ms_fp32']:.1f} / {r[f'{step}_ms_{p}']:.1f} ({r[f'{step}_speedup']:.2f}x; "
                f"CPU {r[f'{step}_cpu_ms_fp32']:.1f} / {r[f'{step}_cpu_ms_{p}']:.1f}, {r[f'{step}_speedup_cpu']:.2f}x)")

    def quality(r: dict) -> str:
        q, p = r["quality"], r["precision"]
        return f"{q} {r[f'{q}_fp32']:.3f} -> {r[f'{q}_{p}']:.3f} ({r[f'{q}_change_vs_fp32']:+.3f})"

    table = markdown_table(header, [
        [r["target"], r["precision"], r["batch_size"], cell(r, "encode"), cell(r, "decode"), cell(r, "train"),
         f"{r['ids_identical_vs_fp32']:.4f}", quality(r)] for r in rows])
    notes = [f"device {rows[0]['device']} (precision auto -> {rows[0]['auto']}), {rows[0]['threads']} threads, "
             f"allocator {rows[0]['allocator']}; medians of {rows[0]['repeats']} (wall, and process CPU time), "
             "fp32 and P interleaved; x = fp32 time / P's time; int8 has no training step"]
    return "\n".join([table, "", *notes])


def main(argv: list[str] | None = None) -> int:
    """CLI: ``discotok bench precision TARGET... [--data DIR] [--batch-size 8] [--repeats 5] [--no-train] [--json P]``."""
    parser = bench_parser("precision")
    args = parser.parse_args(argv)

    def rows() -> list[dict]:
        out = []
        for target in args.targets or [""]:
            out.append(measure([target] if target else [], args.data, args.batch_size, args.repeats, args.threads,
                               args.seconds, args.device, not args.no_train, args.against))
            print(f"done: {out[-1]['target']}", file=sys.stderr, flush=True)
        return out

    return measured_rows("precision", rows, format_table, args.json)


if __name__ == "__main__":
    sys.exit(main())
