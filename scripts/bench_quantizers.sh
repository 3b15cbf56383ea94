#!/usr/bin/env bash
# Time discotok's quantizers beside vector-quantize-pytorch under both glibc allocator settings.
# Usage: scripts/bench_quantizers.sh [--allocator default|tuned|both] [--repeats 15] [--json PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m discotok.bench.quantizers "$@"
