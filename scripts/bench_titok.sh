#!/usr/bin/env bash
# Time the TiTok configs (encode, decode, training step, peak memory) beside the reference figures.
# Usage: scripts/bench_titok.sh [--configs titok_s128 titok_b64 titok_l32] [--batch-size 8] [--repeats 3]
#        [--threads 2] [--allocator default|tuned|both] [--compile] [--json PATH]
# Uses $PYTHON, else the repository's .venv, else `python` on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
exec "$PYTHON" -m discotok.bench.titok "$@"
