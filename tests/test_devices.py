import os
import platform
import subprocess
import sys
import threading

import pytest
import torch

from vidcolour import devices, perf
from vidcolour.devices import autocast_dtype, model_workers, use_threads
from vidcolour.errors import VidcolourError

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("native", "precision", "expected"),
    [
        (True, "auto", torch.bfloat16),
        (False, "auto", None),  # emulated bf16 is tens of times slower than float32
        (False, "bf16", torch.bfloat16),  # asked for by name: kept
        (True, "fp32", None),
    ],
)
def test_auto_takes_bf16_only_where_it_is_native(monkeypatch, native, precision, expected) -> None:
    monkeypatch.setattr(devices, "bf16_is_fast", lambda device: native)
    assert autocast_dtype(CPU, precision) == expected


def test_unknown_precision_is_named() -> None:
    with pytest.raises(VidcolourError, match="unknown precision 'fp16'"):
        autocast_dtype(CPU, "fp16")


@pytest.mark.parametrize(("precision", "warned"), [("bf16", True), ("auto", False)])
def test_training_warns_when_bf16_is_forced_where_it_is_emulated(
    monkeypatch, tmp_path, precision, warned
) -> None:
    from io import StringIO

    from rich.console import Console

    from tests.helpers import small_config, write_photos
    from vidcolour import train as train_module

    monkeypatch.setattr(devices, "bf16_is_fast", lambda device: False)
    monkeypatch.setattr(train_module, "bf16_is_fast", lambda device: False)
    write_photos(tmp_path / "photos", 2)
    out = StringIO()
    config = small_config("bn", f"train.precision={precision}", "train.batch_size=1")
    args = train_module.RunArgs(data=str(tmp_path / "photos"), out=tmp_path / "run", device="cpu")
    train_module.train(config, args, console=Console(file=out, width=300), dry_run=True)
    assert ("emulated, tens of times slower" in out.getvalue()) is warned
    assert ("torch.bfloat16" in out.getvalue()) is warned  # the plan names the precision used


def test_the_matmul_reference_is_the_best_size(monkeypatch) -> None:
    """MFU's denominator is the fastest of several sizes, smallest first, within the time
    given: on a CPU with AMX one size alone (1024) read 40% below the others."""
    timed: list[tuple[int, float]] = []

    def rate(device, dtype, n, seconds):
        timed.append((n, seconds))
        return {1024: 1.2e12, 1536: 2.2e12, 2048: 2.0e12}[n]

    monkeypatch.setattr(perf, "matmul_rate", rate)
    assert perf.matmul_flops_per_s(CPU, torch.bfloat16, seconds=0.3) == 2.2e12
    assert [n for n, _ in timed] == [1024, 1536, 2048]
    # the first size a third of the time; each later one a share of what is left (here all)
    assert timed[0][1] == pytest.approx(0.1, abs=0.01)
    assert [s for _, s in timed[1:]] == pytest.approx([0.15, 0.3], abs=0.01)


def test_a_size_that_would_overrun_is_skipped(monkeypatch) -> None:
    """At the first size's rate one window of 8 products of 1536 takes 58 s: not tried."""
    timed: list[int] = []

    def rate(device, dtype, n, seconds):
        timed.append(n)
        return 1e9

    monkeypatch.setattr(perf, "matmul_rate", rate)
    assert perf.matmul_flops_per_s(CPU, torch.bfloat16, seconds=1.5) == 1e9
    assert timed == [1024]


def test_the_matmul_rate_counts_two_flops_per_multiply_add(monkeypatch) -> None:
    clock = iter(range(10**6))  # every reading of the clock one second later
    monkeypatch.setattr(perf.time, "perf_counter", lambda: float(next(clock)))
    rate = perf.matmul_rate(CPU, torch.float32, 64, seconds=0.5)
    assert rate == 2 * 64**3 * perf.WINDOW  # one window (at least one), timed as 1 s


@pytest.mark.parametrize(
    ("device", "threads", "compiled", "requested", "expected"),
    [
        ("cpu", 2, False, 0, 2),  # auto on a CPU: two, each on half the threads
        ("cpu", 1, False, 0, 1),  # one thread: nothing to share
        ("cpu", 2, True, 0, 1),  # torch.compile serialises its calls
        ("cuda", 2, False, 0, 1),
        ("cpu", 2, False, 3, 3),  # asked for: as asked
    ],
)
def test_model_workers(monkeypatch, device, threads, compiled, requested, expected) -> None:
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    assert model_workers(torch.device(device), requested, compiled) == expected


def test_use_threads_changes_the_calling_thread_alone() -> None:
    default = torch.get_num_threads()
    seen: dict[str, int] = {}

    def worker() -> None:
        use_threads(default + 1)
        seen["worker"] = torch.get_num_threads()

    def later() -> None:
        seen["later"] = torch.get_num_threads()

    for target in (worker, later):  # one after the other: "later" starts once worker is done
        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
    assert seen == {"worker": default + 1, "later": default}
    assert torch.get_num_threads() == default


ARENA_PROBE = """
import ctypes, os, sys, tempfile, threading
from vidcolour.perf import keep_freed_memory

libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype, libc.fopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p]
libc.fclose.argtypes = [ctypes.c_void_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.malloc.restype = ctypes.c_void_p

def arenas():
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "info.xml")
        stream = libc.fopen(path.encode(), b"w")
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        return open(path).read().count("<heap nr=")

if sys.argv[1] == "tuned":
    keep_freed_memory()
before = arenas()
thread = threading.Thread(target=lambda: libc.malloc(1 << 16))
thread.start()
thread.join()
print(before, arenas())
"""


@pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc" or "MALLOC_ARENA_MAX" in os.environ,
    reason="glibc's malloc, its arenas not limited from outside",
)
def test_keep_freed_memory_gives_new_threads_the_main_arena() -> None:
    """A thread started after it allocates in the arena the settings hold in, not its own."""

    def arenas(mode: str) -> list[int]:
        probe = subprocess.run(
            [sys.executable, "-c", ARENA_PROBE, mode], capture_output=True, text=True, check=True
        )
        return [int(n) for n in probe.stdout.split()]

    before, after = arenas("plain")
    assert after == before + 1  # the probe sees a thread's own arena when there is one
    before, after = arenas("tuned")
    assert after == before
