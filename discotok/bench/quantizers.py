"""``discotok bench quantizers``: our quantizers beside vector-quantize-pytorch, per allocator.

glibc reads ``MALLOC_MMAP_MAX_`` / ``MALLOC_TRIM_THRESHOLD_`` once, when the process
starts, so each allocator setting runs in its own child process
(``python -m discotok.bench.quantizers --allocator X --json OUT``). With the *default*
allocator glibc hands large freed blocks back to the OS and every fresh large temporary
is page-faulted in again; *tuned* keeps them in the heap. Each case runs both
implementations in one process on the same input, 2 torch threads, median of
``repeats`` timings after warm-up. This is a benchmark, never a timed test.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from discotok.commands.bench import ALLOCATORS, bench_parser

TUNED_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}
WARMUP = 3
# Minimum speedup (theirs / ours) asked of each case, per allocator.
GOALS = {
    "vq_eval": {"default": 3.0, "tuned": 1.5},
    "lfq14_train": {"default": 10.0, "tuned": 10.0},
}


@dataclass
class Case:
    """One benchmark: two zero-argument callables doing the same work."""

    name: str
    what: str
    ours: Callable[[], object]
    theirs: Callable[[], object] | None


def _eval_forward(module: torch.nn.Module, z: torch.Tensor) -> Callable[[], object]:
    module.eval()

    def run() -> object:
        with torch.no_grad():
            return module(z)

    return run


def _train_step(module: torch.nn.Module, z: torch.Tensor, loss_of: Callable) -> Callable[[], object]:
    module.train()
    z = z.clone().requires_grad_(True)

    def run() -> object:
        z.grad = None
        out = module(z)
        loss_of(out).backward()
        return out

    return run


def build_cases() -> list[Case]:
    """The benchmark cases, built with matching settings and inputs."""
    import vector_quantize_pytorch as lib

    from discotok.quantizers import QUANTIZERS

    g = torch.Generator().manual_seed(0)
    cases = []

    vq = QUANTIZERS.build({"name": "vq", "dim": 12, "codebook_size": 4096, "kmeans_init": False})
    lib_vq = lib.VectorQuantize(dim=12, codebook_size=4096, kmeans_init=False, sync_codebook=False)
    with torch.no_grad():
        lib_vq._codebook.embed.copy_(vq.codebook.unsqueeze(0))
    z = torch.randn(8, 256, 12, generator=g)
    cases.append(Case("vq_eval", "VQ 4096 codes, eval forward, z (8,256,12)",
                      _eval_forward(vq, z), _eval_forward(lib_vq, z)))

    z = torch.randn(8, 256, 14, generator=g)
    lfq = QUANTIZERS.build({"name": "lfq", "dim": 14, "bits": 14, "groups": 2})
    lib_lfq = lib.LFQ(dim=14, codebook_size=2**14)
    cases.append(Case("lfq14_train", "LFQ 2^14, train forward+backward, z (8,256,14)",
                      _train_step(lfq, z, lambda o: o.z_q.square().mean() + o.loss),
                      _train_step(lib_lfq, z, lambda o: o[0].square().mean() + o[2])))

    levels = [8, 8, 8, 5, 5, 5]
    z = torch.randn(8, 256, 6, generator=g)
    cases.append(Case("fsq_eval", "FSQ [8,8,8,5,5,5], eval forward, z (8,256,6)",
                      _eval_forward(QUANTIZERS.build({"name": "fsq", "dim": 6, "levels": levels}), z),
                      _eval_forward(lib.FSQ(levels=levels, dim=6), z)))

    rvq = QUANTIZERS.build({"name": "rvq", "dim": 16, "depth": 4, "codebook_size": 1024,
                            "kmeans_init": False})
    lib_rvq = lib.ResidualVQ(dim=16, num_quantizers=4, codebook_size=1024, kmeans_init=False,
                             sync_codebook=False)
    with torch.no_grad():
        for mine, theirs in zip(rvq.levels, lib_rvq.layers, strict=True):
            theirs._codebook.embed.copy_(mine.codebook.unsqueeze(0))
    z = torch.randn(8, 256, 16, generator=g)
    cases.append(Case("rvq_eval", "RVQ 4 x 1024, eval forward, z (8,256,16)",
                      _eval_forward(rvq, z), _eval_forward(lib_rvq, z)))

    z = torch.randn(8, 256, 16, generator=g)
    binary = QUANTIZERS.build({"name": "binary", "dim": 16, "bits": 16})
    lib_binary = lib.LFQ(dim=16, codebook_size=2**16, entropy_loss_weight=0.0)
    cases.append(Case("binary16_eval", "binary 16 bits (theirs: LFQ, eval), z (8,256,16)",
                      _eval_forward(binary, z), _eval_forward(lib_binary, z)))
    return cases


def time_ms(
    fn: Callable[[], object], repeats: int, warmup: int = WARMUP, device: torch.device | None = None
) -> float:
    """Median wall time of ``fn`` in milliseconds after ``warmup`` untimed calls (CUDA synchronised on ``device``)."""

    def sync() -> None:
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def allocator_in_effect() -> str:
    """Which allocator setting this process runs with: 'tuned' (the environment at start, or the ``discotok``
    command's ``mallopt``, ``discotok.allocator``), 'default' or 'other'."""
    from discotok.allocator import tuned_at_runtime

    env = {k: os.environ.get(k) for k in TUNED_ENV}
    if env == TUNED_ENV or tuned_at_runtime():
        return "tuned"
    return "default" if all(v is None for v in env.values()) else "other"


def run_cases(repeats: int = 15) -> list[dict]:
    """Time every case in this process; returns one row per case."""
    torch.set_num_threads(2)
    allocator = allocator_in_effect()
    rows = []
    for case in build_cases():
        torch.manual_seed(0)
        ours = time_ms(case.ours, repeats)
        theirs = time_ms(case.theirs, repeats) if case.theirs else None
        goal = GOALS.get(case.name, {}).get(allocator, 1.0)
        speedup = theirs / ours if theirs else None
        rows.append({
            "case": case.name, "what": case.what, "allocator": allocator,
            "ours_ms": ours, "theirs_ms": theirs, "speedup": speedup, "goal": goal,
            "met": None if speedup is None else speedup >= goal,
        })
    return rows


def environment() -> dict:
    """Versions and machine facts stored beside the timings."""
    from importlib.metadata import version

    return {
        "torch": torch.__version__,
        "vector_quantize_pytorch": version("vector-quantize-pytorch"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": 2,
    }


def child_env(allocator: str) -> dict[str, str]:
    """This process's environment with the glibc malloc variables of ``allocator``."""
    env = {k: v for k, v in os.environ.items() if k not in TUNED_ENV}
    return {**env, **TUNED_ENV} if allocator == "tuned" else env


def run_child(module: str, args: list[str], allocator: str) -> dict:
    """Run ``python -m module *args --json OUT`` under ``allocator``; return the JSON it wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, "-m", module, *args, "--json", str(out)]
        proc = subprocess.run(cmd, env=child_env(allocator), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"bench child for allocator {allocator!r} failed:\n{proc.stderr[-4000:]}")
        return json.loads(out.read_text())



def run_configs(module: str, configs: list[str], allocator: str, common: list[str]) -> list[dict]:
    """Each config under each allocator (``allocator`` may be ``both``) in its own child process
    (``python -m module --child --configs NAME --allocator X *common``); the rows in that order."""
    rows = []
    for setting in ALLOCATORS if allocator == "both" else (allocator,):
        for name in configs:
            child = ["--child", "--configs", name, "--allocator", setting, *common]
            rows += run_child(module, child, setting)["rows"]
            print(f"done: {name} ({setting})", file=sys.stderr, flush=True)
    return rows

def run_quantizer_bench(
    allocators: tuple[str, ...] = ALLOCATORS, repeats: int = 15, json_path: str | Path | None = None
) -> list[dict]:
    """Run the cases once per allocator, each in a fresh child process; print and save a table."""
    rows = []
    for allocator in allocators:
        args = ["--allocator", allocator, "--repeats", str(repeats)]
        rows += run_child("discotok.bench.quantizers", args, allocator)["rows"]
    print(format_table(rows))
    if json_path is not None:
        write_json(json_path, rows)
    return rows


def format_table(rows: list[dict]) -> str:
    """A plain-text table: case, allocator, ours ms, theirs ms, speedup, goal."""

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    head = f"{'case':<15} {'allocator':<9} {'ours ms':>9} {'theirs ms':>10} {'speedup':>8} {'goal':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        mark = {True: " ok", False: " MISSED", None: ""}[r["met"]]
        lines.append(
            f"{r['case']:<15} {r['allocator']:<9} {num(r['ours_ms'], '9.2f')} "
            f"{num(r['theirs_ms'], '10.2f')} {num(r['speedup'], '7.1f')}x {r['goal']:>5.1f}x{mark}"
        )
    return "\n".join(lines)


def write_json(path: str | Path, rows: list[dict]) -> None:
    """Write rows and the environment to ``path`` atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"environment": environment(), "rows": rows}, indent=2))
    tmp.replace(path)


def emit_rows(table: str, rows: list[dict], json_path: str | Path | None) -> int:
    """Print a benchmark's table, write its rows to ``json_path`` when given; the command's exit status (0)."""
    print(table)
    if json_path:
        write_json(json_path, rows)
    return 0


def measured_rows(
    bench: str, measure: Callable[[], list[dict]], format_table: Callable[[list[dict]], str], json_path: str | None,
) -> int:
    """Run ``measure`` and emit its rows; a ``ValueError`` / ``OSError`` (a bad target or file) becomes one
    ``discotok bench BENCH: error: ...`` line and exit status 1."""
    try:
        rows = measure()
    except (ValueError, OSError) as err:
        print(f"discotok bench {bench}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    return emit_rows(format_table(rows), rows, json_path)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``discotok bench quantizers [--allocator default|tuned|both] [--repeats 15] [--json PATH]``."""
    parser = bench_parser("quantizers")
    args = parser.parse_args(argv)
    allocators = ALLOCATORS if args.allocator == "both" else (args.allocator,)
    if allocators == (allocator_in_effect(),):
        rows = run_cases(args.repeats)  # already started under the asked-for allocator
        print(format_table(rows))
        if args.json:
            write_json(args.json, rows)
    else:
        run_quantizer_bench(allocators, args.repeats, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
