"""Throughput references: the device's measured matmul rate, the denominator of MFU."""

from __future__ import annotations

import time

import torch


def matmul_flops_per_s(device: torch.device, dtype: torch.dtype, seconds: float = 0.5) -> float:
    """FLOP/s of a large square matmul on ``device`` in ``dtype``, measured now.

    Measured rather than looked up: a CPU's rate depends on its ISA, its clocks and what else
    runs, so MFU is only honest against a rate taken on the same machine in the same run.
    """
    n = 4096 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):  # warm-up: kernel selection, caches, clocks
        a @ b
    _sync(device)
    reps = 0
    start = time.perf_counter()
    while True:
        a @ b
        reps += 1
        if reps % 4 == 0:
            _sync(device)  # CPU-GPU sync point, only every few launches
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return 2 * n**3 * reps / elapsed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
