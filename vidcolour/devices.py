"""Device and precision choices shared by training and inference."""

from __future__ import annotations

import threading

import torch

from vidcolour.errors import VidcolourError

PRECISIONS = ("auto", "bf16", "fp32")


def resolve_device(name: str) -> torch.device:
    """'auto' (CUDA when present), 'cpu' or 'cuda' (an error without CUDA)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise VidcolourError("--device cuda: no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast speeds convolutions up on ``device``: CUDA with bf16 support, or a
    CPU with native bf16 instructions (AVX512-BF16 / AMX); elsewhere bf16 is emulated and slow."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for ``precision``; None means float32 throughout.

    auto: bf16 where ``device`` runs it natively (bf16_is_fast), else float32. bf16: bf16 on any
    CPU (emulated ones included, at a large cost) and on CUDA devices that support it. fp32: None.
    """
    if precision not in PRECISIONS:
        raise VidcolourError(
            f"unknown precision '{precision}' (choose from {', '.join(PRECISIONS)})"
        )
    if precision == "fp32" or (precision == "auto" and not bf16_is_fast(device)):
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return None
    return torch.bfloat16


_THREADS = threading.Lock()


def model_workers(device: torch.device, requested: int = 0, compiled: bool = False) -> int:
    """How many threads run the generator side by side on one film (``requested``; 0: auto).

    Auto is two on a CPU with two or more intra-op threads, each on half of them: when the
    decoder and x264 take a core from a generator on both, it waits for that core at each
    layer's end, where two generators on one each let the other carry on (on a 2-core EPYC,
    end to end ahead of one worker in 14 of 17 rounds at 576p, 1080p and on the example clip;
    docs/BENCHMARKS.md, "Two model workers, one malloc arena"). One on CUDA (not measured
    there: a GPU takes the batches one at a time) and under ``torch.compile``, whose calls are
    serialised (predict.Compiled).
    """
    if requested:
        return requested
    if device.type != "cpu" or compiled or torch.get_num_threads() < 2:
        return 1
    return 2


def use_threads(count: int) -> None:
    """Run the calling thread's torch CPU work on ``count`` intra-op threads, and nothing else's.

    Call it first thing in a thread of one's own. torch's count is per thread (an OpenMP
    setting) but ``torch.set_num_threads`` also changes the count new threads start with; a
    throwaway thread puts that back, so threads started later (another film's) are as before.
    A thread whose first parallel torch call falls inside that window (well under a
    millisecond) keeps ``count`` threads: slower, never wrong. The call also empties oneDNN's
    cache of compiled kernels, which the next batches rebuild.
    """
    with _THREADS:
        default = torch.get_num_threads()  # this thread's first use: it would undo what follows
        if count == default:
            return
        torch.set_num_threads(count)
        reset = threading.Thread(target=torch.set_num_threads, args=(default,))
        reset.start()
        reset.join()
