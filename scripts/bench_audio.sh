#!/usr/bin/env bash
# Real-time factor of encode and decode of 10 s of audio at the EnCodec-like size (experiment=encodec_24k).
# Usage: scripts/bench_audio.sh [--configs encodec_24k wavtokenizer] [--seconds 10] [--repeats 5]
#        [--threads 2] [--allocator default|tuned|both] [--device cpu|cuda] [--json PATH]
# Uses $PYTHON, else the repository's .venv, else `python` on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
exec "$PYTHON" -m discotok.bench.audio "$@"
