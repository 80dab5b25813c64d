"""The matmul rate by size: why MFU's reference is the best of several sizes.

    python benchmarks/matmul_sizes.py [--sizes 512,1024,1536,2048,3072,4096] [--seconds 1]

Times square products in bf16 (where the CPU runs it natively, as autocast does) and float32,
each size the way `vidcolour.perf.matmul_flops_per_s` does (the best window of 8 products),
and prints TFLOP/s per size, the CPU, and the reference that function returns (its sizes given
--seconds each).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from colour_stage import cpu_name  # benchmarks/, the script's own folder

from vidcolour.devices import autocast_dtype
from vidcolour.perf import MATMUL_SIZES, matmul_flops_per_s, matmul_rate

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--sizes", default="512,1024,1536,2048,3072,4096")
parser.add_argument("--seconds", type=float, default=1.0, help="per size and dtype")
args = parser.parse_args()

device = torch.device("cpu")
CPUINFO = Path("/proc/cpuinfo")  # Linux's: where the flags are
dtypes = [d for d in (autocast_dtype(device, "auto"), torch.float32) if d is not None]
result: dict[str, object] = {
    "cpu": cpu_name(),
    "isa": torch.backends.cpu.get_cpu_capability(),  # e.g. AVX512 (AMX is not named here)
    "amx": CPUINFO.exists() and "amx_bf16" in CPUINFO.read_text(),
    "threads": torch.get_num_threads(),
}
for dtype in dtypes:
    name = str(dtype).removeprefix("torch.")
    result[f"{name}_tflops_by_size"] = {
        n: round(matmul_rate(device, dtype, n, args.seconds) / 1e12, 3)
        for n in map(int, args.sizes.split(","))
    }
    budget = args.seconds * len(MATMUL_SIZES["cpu"])  # its sizes, --seconds each
    result[f"{name}_reference_tflops"] = round(matmul_flops_per_s(device, dtype, budget) / 1e12, 3)
print(json.dumps(result, indent=1))
