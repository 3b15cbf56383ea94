"""``discotok bench <name>``: benchmarks (never timed tests)."""

from __future__ import annotations

import sys

BENCHES = {
    "tokenizer": "discotok.bench.tokenizer",
    "quantizers": "discotok.bench.quantizers",
    "titok": "discotok.bench.titok",
    "audio": "discotok.bench.audio",
    "precision": "discotok.bench.precision",
    "extract": "discotok.bench.extract",
    "stream": "discotok.bench.stream",
    "reference": "discotok.bench.reference",
}


def main(argv: list[str]) -> int:
    """Dispatch ``discotok bench NAME [args]`` to the named benchmark's ``main``."""
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHES:
        print(f"usage: discotok bench {{{','.join(BENCHES)}}} [args...]", file=sys.stderr if argv else sys.stdout)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    import importlib

    from discotok.commands.bench import bench_parser

    bench_parser(argv[0]).parse_args(argv[1:])  # --help and bad arguments answered before the benchmark's imports
    return int(importlib.import_module(BENCHES[argv[0]]).main(argv[1:]) or 0)
