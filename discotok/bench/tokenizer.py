"""``discotok bench tokenizer TARGET``: encode and decode throughput, a training step's time, peak memory.

TARGET is a tokenizer directory (its trained weights) or a named config: Hydra overrides
such as ``experiment=titok_tiny quantizer=fsq`` or a bare experiment name (``smoke``,
``titok_s128``, ``audio_tiny``, ``encodec_24k``), built with random init. Timings are
medians of ``repeats`` runs after ``warmup`` untimed ones, synchronised on GPUs: ``encode``
and ``decode(ids)`` in eval/inference mode, and one training step (train-mode forward, MSE +
quantizer loss, backward, AdamW step over the whole tokenizer). Image tokenizers run on a
batch of random images at the config's image size and report images/s; audio tokenizers on
``batch_size`` clips of ``seconds`` of speech (espeak-ng, else synthetic) and report the
real-time factor (compute seconds per second of audio, measured by
``codec_ms``, which ``discotok bench audio`` uses too). With ``--vs
TARGET`` (repeatable) the training steps of all targets are timed in turns in one process, so a
shared machine's changing load falls on them alike, and each row gives its step time over the
first target's (``train vs 1st``): compare quantizers this way, not from separate runs. Peak memory
is the process's resident-set high-water mark on CPU, ``torch.cuda.max_memory_allocated``
during the training step on GPU. Printed as a table and optionally written as JSON. A
benchmark, never a timed test.
"""

from __future__ import annotations

import resource
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from discotok.commands.bench import bench_parser
from discotok.bench.quantizers import allocator_in_effect, measured_rows, time_ms
from discotok.nn.precision import precision_context
from discotok.tokenizers.tokenizer import Tokenizer


def compose_tokenizer(overrides: Sequence[str], seed: int = 0) -> Tokenizer:
    """Compose ``configs/train.yaml`` with Hydra ``overrides`` and build its tokenizer (random init)."""
    from hydra import compose, initialize_config_dir

    from discotok.train.run import config_dir, tokenizer_spec

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    torch.manual_seed(seed)
    return Tokenizer.from_config(tokenizer_spec(cfg))


def load_target(target: Sequence[str]) -> tuple[Tokenizer, str]:
    """A tokenizer directory, Hydra overrides, or a bare experiment name -> (tokenizer, label)."""
    if len(target) == 1 and Path(target[0]).is_dir():
        return Tokenizer.from_pretrained(target[0]), str(target[0])
    if len(target) == 1 and "/" in target[0] and "=" not in target[0]:
        raise FileNotFoundError(f"tokenizer directory {target[0]!r} does not exist")
    overrides = [t if "=" in t else f"experiment={t}" for t in target]
    return compose_tokenizer(overrides), " ".join(overrides) or "default"


def num_params(*modules: torch.nn.Module) -> int:
    """Total parameter count of ``modules``."""
    return sum(p.numel() for m in modules for p in m.parameters())


def peak_rss_gb() -> float:
    """This process's resident-set high-water mark in GB (10^9 bytes; Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def train_step(tok: Tokenizer, x: torch.Tensor, precision: str = "fp32") -> Callable[[], object]:
    """One training step of the whole tokenizer: MSE + quantizer loss, backward, AdamW; ``precision`` bf16 runs
    forward and loss under bf16 autocast, as Lightning's ``bf16-mixed`` does (weights and optimizer in fp32)."""
    opt = torch.optim.AdamW(tok.parameters(), lr=1e-4)

    def run() -> object:
        tok.train()
        with precision_context(precision, x.device):
            out = tok(x)
            loss = F.mse_loss(out.x_hat.float(), x) + out.quantized.loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return run


def train_timings(
    tok: Tokenizer, x: torch.Tensor, repeats: int, warmup: int = 1, train_ms: float | None = None
) -> dict[str, float]:
    """Median ms of one training step on ``x`` (``train_ms`` when it was timed already, e.g. in turns
    with other targets) and the peak memory (process RSS on CPU, CUDA max allocated)."""
    device = x.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if train_ms is None:
        train_ms = time_ms(train_step(tok, x), repeats, warmup, device=device)
    peak_gb = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else peak_rss_gb()
    return {"train_step_ms": train_ms, "peak_gb": peak_gb}


def train_ms_in_turns(steps: Sequence[Callable[[], object]], repeats: int, warmup: int = 1,
                      device: torch.device | None = None) -> list[float]:
    """Median ms of each training step, timed in turns (first, second, ..., first, second, ...) in one
    process: load that comes and goes on a shared machine falls on every target alike, so their ratio holds."""
    for step in steps:
        for _ in range(warmup):
            step()
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeats):
        for step, taken in zip(steps, times):
            taken.append(time_ms(step, 1, 0, device=device))
    return [statistics.median(taken) for taken in times]


def codec_ms(tok: Tokenizer, x: torch.Tensor, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median ms of ``encode(x)`` and of ``decode(ids)`` back to ``x``'s size (eval, inference mode, CUDA
    synchronised), and the token positions per item."""
    tok.eval()
    with torch.inference_mode():
        ids = tok.encode(x)
        encode_ms = time_ms(lambda: tok.encode(x), repeats, warmup, device=x.device)
        decode_ms = time_ms(lambda: tok.decode(ids, size=x.shape[2:]), repeats, warmup, device=x.device)
    return {"frames": int(ids.shape[1]), "encode_ms": encode_ms, "decode_ms": decode_ms}


def timings(
    tok: Tokenizer, x: torch.Tensor, repeats: int, warmup: int = 1, train_ms: float | None = None
) -> dict[str, float]:
    """The training step (``train_ms`` when timed already) and peak memory, then encode and decode, as the
    modality reports them (``Modality.bench_figures``: images/s, or real-time factors).

    Training comes first: the VQ search caches a scratch buffer, and one made under
    inference mode cannot be written outside it.
    """
    train = train_timings(tok, x, repeats, warmup, train_ms)
    return tok.modality.bench_figures(x, train | codec_ms(tok, x, repeats, warmup))


def prepare(
    target: Sequence[str], batch_size: int = 8, repeats: int = 5, device: str = "cpu", threads: int = 2,
    seconds: float = 2.0,
) -> tuple[Tokenizer, torch.Tensor, dict]:
    """The tokenizer of ``target`` on ``device``, its input batch (images, or ``batch_size`` clips of
    ``seconds``) and the row's description (no timings yet)."""
    torch.set_num_threads(threads)
    tok, label = load_target(target)
    tok = tok.to(device)
    row = {"target": label, "modality": tok.modality.name, "device": str(device), "allocator": allocator_in_effect(),
           "threads": threads, "batch_size": batch_size, "repeats": repeats, "params_m": num_params(tok) / 1e6,
           "peak_memory": "CUDA max allocated" if str(device).startswith("cuda") else "process peak RSS"}
    x, rates = tok.modality.bench_input(batch_size, seconds)
    return tok, x.to(device), row | rates


def figures(tok: Tokenizer, x: torch.Tensor, row: dict, train_ms: float | None = None) -> dict:
    """``row`` with the timings of ``tok`` on ``x`` (the training step's ``train_ms`` when timed already)."""
    return row | timings(tok, x, row["repeats"], train_ms=train_ms)


def measure(
    target: Sequence[str], batch_size: int = 8, repeats: int = 5, device: str = "cpu", threads: int = 2,
    seconds: float = 2.0,
) -> dict:
    """One result row for a tokenizer directory or named config (audio: ``batch_size`` clips of ``seconds``)."""
    return figures(*prepare(target, batch_size, repeats, device, threads, seconds))


def measure_in_turns(
    targets: Sequence[Sequence[str]], batch_size: int = 8, repeats: int = 5, device: str = "cpu", threads: int = 2,
    seconds: float = 2.0,
) -> list[dict]:
    """Rows for several targets whose training steps are timed in turns (``train_ms_in_turns``); each row
    after the first also gets ``train_vs_first``, its training step's time over the first target's."""
    prepared = [prepare(t, batch_size, repeats, device, threads, seconds) for t in targets]
    steps = [train_step(tok, x) for tok, x, _ in prepared]
    train_ms = train_ms_in_turns(steps, repeats, device=prepared[0][1].device)
    rows = [figures(tok, x, row, ms) for (tok, x, row), ms in zip(prepared, train_ms)]
    for row, ms in zip(rows[1:], train_ms[1:]):
        row["train_vs_first"] = ms / train_ms[0]
    return rows


def format_table(rows: Sequence[dict]) -> str:
    """Markdown tables of the rows, one per modality in order of appearance (images/s, real-time factors)."""
    from discotok.registry import MODALITIES

    names = dict.fromkeys(r["modality"] for r in rows)
    return "\n\n".join(MODALITIES.get(n).bench_table([r for r in rows if r["modality"] == n]) for n in names)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``discotok bench tokenizer TARGET... [--vs TARGET]... [--batch-size 8] [--repeats 5] [--device cpu]
    [--json PATH]``."""
    parser = bench_parser("tokenizer")
    args = parser.parse_args(argv)
    others = [[] if vs.strip() == "default" else vs.split() for vs in args.vs]

    def rows() -> list[dict]:
        if others:
            return measure_in_turns([args.target, *others], args.batch_size, args.repeats, args.device, args.threads,
                                    args.seconds)
        return [measure(args.target, args.batch_size, args.repeats, args.device, args.threads, args.seconds)]

    return measured_rows("tokenizer", rows, format_table, args.json)


if __name__ == "__main__":
    sys.exit(main())
