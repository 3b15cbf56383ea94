#!/usr/bin/env bash
# Time discotok's quantizers beside vector-quantize-pytorch under both glibc allocator settings.
# Usage: scripts/bench_quantizers.sh [--allocator default|tuned|both] [--repeats 15] [--json PATH]
# Uses $PYTHON, else the repository's .venv, else `python` on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
exec "$PYTHON" -m discotok.bench.quantizers "$@"
