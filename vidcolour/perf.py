"""Throughput references: the device's measured matmul rate, the denominator of MFU."""

from __future__ import annotations

import ctypes
import time

import torch

# Square matmul sizes the reference is the best of, by device type (others: the CPU's).
MATMUL_SIZES = {"cpu": (1024, 1536, 2048), "cuda": (4096, 8192)}
WINDOW = 8  # products timed together: one CPU-GPU sync per window


def matmul_flops_per_s(device: torch.device, dtype: torch.dtype, seconds: float = 1.5) -> float:
    """FLOP/s of large square matmuls on ``device`` in ``dtype``, measured now: the best rate
    over a few sizes (``MATMUL_SIZES``), smallest first, sharing ``seconds`` between them.

    Measured rather than looked up: a CPU's rate depends on its ISA, its clocks and what else
    runs, so MFU is only honest against a rate taken on the same machine in the same run.
    The best of several short windows is taken: a single window swings by 10% on a busy
    machine, the best one is stable, and it errs towards a lower MFU. Several sizes, because
    no one size reaches the peak everywhere: with AMX, bf16 products of 1024 ran at 1.2
    TFLOP/s and of 1536-2048 at 1.9-2.3 (docs/BENCHMARKS.md, "The matmul reference"). A
    size whose one window would not fit in the time left, at the best rate so far, is
    skipped (a slow dtype, such as emulated bf16, stays within its time).
    """
    sizes = MATMUL_SIZES.get(device.type, MATMUL_SIZES["cpu"])
    deadline = time.perf_counter() + seconds
    best = 0.0
    for i, n in enumerate(sizes):
        left = deadline - time.perf_counter()
        if best and WINDOW * 2 * n**3 / best > left:
            break
        best = max(best, matmul_rate(device, dtype, n, left / (len(sizes) - i)))
    return best


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int, seconds: float) -> float:
    """The best FLOP/s of windows of ``WINDOW`` products of two n x n matrices, taken over
    ``seconds`` (at least one window)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):  # warm-up: kernel selection, caches, clocks
        a @ b
    _sync(device)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while not best or time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(WINDOW):
            a @ b
        _sync(device)
        best = max(best, 2 * n**3 * WINDOW / (time.perf_counter() - start))
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -2, -3, -8


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep large freed blocks instead of returning them to the OS.

    By default glibc serves blocks over ~128 KiB-32 MiB with mmap and gives them back on free,
    so every training step pays page faults to re-zero its activation memory. Keeping them
    (as tcmalloc does) made CPU training 5-10% faster on our machines (docs/BENCHMARKS.md).
    Process memory then stays at its peak rather than shrinking between steps, which suits a
    training process. Threads started afterwards share the main thread's arena: in an arena of
    its own a thread ran the generator 2-4% slower than the main thread did (1-2% in the main
    arena), and with one arena `vidcolour bench` end to end went 1-16% faster, six pairs of six
    (docs/BENCHMARKS.md, "Two model workers, one malloc arena"). One arena is also what an
    application that loads a ``Colouriser`` gets, whatever its own threads. Returns False
    where the C library is not glibc (nothing changes).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)  # the largest value glibc accepts
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    ok &= mallopt(_M_TOP_PAD, 256 * 2**20)
    ok &= mallopt(_M_ARENA_MAX, 1)
    return bool(ok)
