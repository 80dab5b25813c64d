"""Helpers for the video tests: a tiny random model, and reading back what a file holds."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch

from vidcolour.config import GeneratorConfig
from vidcolour.nets import build_generator
from vidcolour.weights import save_generator

TINY = GeneratorConfig(ngf=4, depth=4, norm="ibn", spectral_norm=True)


def save_tiny_model(path: Path) -> Path:
    torch.manual_seed(0)
    save_generator(path, build_generator(TINY), name="tiny")
    return path


def frames(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def times(path: Path) -> list[float]:
    return [float(f.pts * f.time_base) for f in frames(path)]


def luma(frame: av.VideoFrame) -> np.ndarray:
    """The Y' plane as float codes at 8-bit scale."""
    bits = frame.format.components[0].bits
    dtype = np.uint8 if bits == 8 else np.dtype("<u2")
    plane = frame.planes[0]
    rows = np.frombuffer(plane, dtype=dtype).reshape(frame.height, -1)[:, : frame.width]
    return rows.astype(np.float64) / 2 ** (bits - 8)


def luma_psnr(a: list[av.VideoFrame], b: list[av.VideoFrame]) -> float:
    mse = np.mean([np.mean((luma(x) - luma(y)) ** 2) for x, y in zip(a, b, strict=True)])
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


def packets(path: Path, kind: str) -> list[bytes]:
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [bytes(p) for p in container.demux(stream) if p.size]


def tags(path: Path) -> dict[str, str]:
    with av.open(str(path)) as container:
        return {k.lower(): v for k, v in container.metadata.items()}
