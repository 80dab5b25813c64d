"""Device and precision choices shared by training and inference."""

from __future__ import annotations

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
