#!/usr/bin/env bash
# The GPU check (issue 22): cuda tests, bench at 1080p and 576p, batch --jobs 1/2/4 and 60 s
# of training MFU for two configs, into one JSON; under 8 minutes on one GPU.
#   bash benchmarks/gpu_check.sh [--dry-run] [--out DIR]
# --dry-run: every step on the CPU at toy sizes, to check the script (tests/test_gpu_check.py).
# Where PyAV or kornia cannot be imported (the lent GPU machine's image has neither, and reaches
# no registry), the packages in .gpu/deps.tar.xz (python benchmarks/gpu_deps.py) are unpacked
# beside it first; vidcolour itself runs from this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # vidcolour from this checkout, installed or not
if ! "$PYTHON" -c "import av, kornia" 2>/dev/null; then
    deps=${GPU_DEPS:-.gpu/deps.tar.xz}
    [ -f "$deps" ] || { echo "Error: PyAV or kornia missing and no $deps (python benchmarks/gpu_deps.py)" >&2; exit 1; }
    site=$(mktemp -d)
    tar -xJf "$deps" -C "$site"
    export PYTHONPATH="$site:$PYTHONPATH"
    "$PYTHON" -c "import av, kornia" || { echo "Error: $deps does not import here" >&2; exit 1; }
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
