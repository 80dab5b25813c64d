#!/usr/bin/env bash
# The GPU check (issue 22): cuda tests, bench at 1080p and 576p, batch --jobs 1/2/4 and 60 s
# of training MFU for two configs, into one JSON; under 8 minutes on one GPU.
#   bash benchmarks/gpu_check.sh [--dry-run] [--out DIR]
# --dry-run: every step on the CPU at toy sizes, to check the script (tests/test_gpu_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python benchmarks/gpu_check.py "$@"
