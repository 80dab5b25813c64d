"""``vidcolour eval-video``: temporal and (with a colour reference) per-frame colour metrics of a
colourised video; ``vidcolour shots``: the cuts the pipeline would find.

Every metric is computed at the output's chroma resolution (at most ``checks.MAX_ROWS`` rows),
from the file's own Y'CbCr codes (docs/METRICS.md):

- CDC and colourfulness: vidcolour/video/checks.py;
- warp error (Lai et al., ECCV 2018): the mean, over pairs of consecutive frames, of the squared
  sRGB difference between frame t+1 and frame t warped onto it, over the pixels the flow
  consistency check keeps (not occluded, not out of the picture); the flow comes from the luma,
  which is the input's own;
- with ``reference`` (the colour original, frame for frame): per-frame ab-L1 and ab-PSNR
  (metrics.py, Lab under D65) and the reference's colourfulness.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F

from vidcolour.colour import rgb_to_lab
from vidcolour.errors import VidcolourError
from vidcolour.fsutil import atomic_path
from vidcolour.metrics import ab_l1, ab_psnr, colourfulness
from vidcolour.video.checks import TemporalChecks, codes_to_rgb
from vidcolour.video.flow import Flow, consistent, warp
from vidcolour.video.planes import Layout, coding_of, luma_view, plane_array
from vidcolour.video.shots import cuts_of, signature
from vidcolour.video.source import Source

SCHEMA = "vidcolour.eval-video/1"


@dataclass
class Picture:
    """One decoded frame, reduced for measuring."""

    rgb: torch.Tensor  # (1, 3, h, w) float32 sRGB in [0, 1]
    luma: np.ndarray  # (h, w) uint8, the luma at the same size (for flow)
    time: float | None  # seconds


def pictures(path: Path) -> Iterator[Picture]:
    """The frames of a video in display order, as ``Picture``s."""
    with Source(path) as source:
        for item in source.frames():
            if isinstance(item, av.VideoFrame):
                yield _picture(item)


def _picture(frame: av.VideoFrame) -> Picture:
    layout = Layout(frame.format.name, frame.width, frame.height)
    luma = luma_view(frame, layout)[None]
    coding = coding_of(frame, layout)
    if layout.gray:  # neutral chroma: 2^(bits-1) in full and limited range alike
        cb = cr = np.full((1, *layout.chroma_size), 2 ** (layout.bits - 1), layout.dtype)
    else:
        cb, cr = (
            plane_array(frame.planes[i], *layout.chroma_size, layout.dtype)[None] for i in (1, 2)
        )
    rgb = codes_to_rgb(luma, cb, cr, coding)
    y = F.adaptive_avg_pool2d(
        torch.from_numpy(luma.astype(np.float32))[:, None], (rgb.shape[-2], rgb.shape[-1])
    )[0, 0].numpy() / 2 ** (layout.bits - 8)
    small = np.clip(y + 0.5, 0, 255).astype(np.uint8)
    time = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
    return Picture(rgb, small, time)


@dataclass
class VideoScores:
    frames: int = 0
    checks: TemporalChecks = field(default_factory=lambda: TemporalChecks(chroma=True))
    per_frame: list[dict[str, float | int | None]] = field(default_factory=list)


def evaluate_video(output: Path, reference: Path | None = None) -> dict[str, Any]:
    """Metrics of ``output``, and against ``reference`` when given. Returns the JSON document
    (schema ``vidcolour.eval-video/1``, docs/METRICS.md)."""
    scores = VideoScores()
    flow = Flow()
    previous: Picture | None = None
    references: Iterator[Picture | None] = (
        pictures(reference) if reference is not None else itertools.repeat(None)
    )
    decoded = 0

    def outputs() -> Iterator[Picture]:
        nonlocal decoded
        for picture in pictures(output):
            decoded += 1
            yield picture

    for picture, truth in zip(outputs(), references, strict=False):
        row: dict[str, float | int | None] = {"frame": scores.frames, "time": picture.time}
        scores.checks.add_rgb(picture.rgb)
        row["colourfulness"] = float(colourfulness(picture.rgb)[0])
        row["warp_error"] = None if previous is None else _warp_error(flow, previous, picture)
        if truth is not None:
            row.update(_against(picture.rgb, truth.rgb))
        scores.per_frame.append(row)
        scores.frames += 1
        previous = picture
    if scores.frames == 0:
        raise VidcolourError(f"{output}: no video frame could be decoded")
    # zip stops at the shorter: an output frame read but not scored, or a reference frame left
    if reference is not None and (decoded > scores.frames or next(references, None) is not None):
        raise VidcolourError(
            f"{reference} and {output} do not have the same number of frames: "
            "the reference must match the output frame for frame"
        )
    return _document(output, reference, scores)


def _warp_error(flow: Flow, previous: Picture, current: Picture) -> float | None:
    forward = flow(current.luma, previous.luma)  # current's pixels -> previous frame
    backward = flow(previous.luma, current.luma)
    keep = consistent(forward, backward)
    if not keep.any():
        return None
    before = previous.rgb[0].permute(1, 2, 0).numpy()
    now = current.rgb[0].permute(1, 2, 0).numpy()
    warped, _ = warp(np.ascontiguousarray(before), forward)
    return float(((now - warped) ** 2).mean(-1)[keep].mean())


def _against(rgb: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    if truth.shape != rgb.shape:
        truth = F.interpolate(truth, size=rgb.shape[-2:], mode="bilinear", antialias=True)
    ab, true_ab = rgb_to_lab(rgb)[:, 1:], rgb_to_lab(truth)[:, 1:]
    return {
        "ab_l1": float(ab_l1(ab, true_ab)[0]),
        "ab_psnr": float(ab_psnr(ab, true_ab)[0]),
        "colourfulness_reference": float(colourfulness(truth)[0]),
    }


def _document(output: Path, reference: Path | None, scores: VideoScores) -> dict[str, Any]:
    def mean(key: str) -> float | None:
        values = [float(v) for r in scores.per_frame if (v := r.get(key)) is not None]
        return sum(values) / len(values) if values else None

    for row in scores.per_frame:  # identical frames have no finite PSNR: JSON has no infinity
        if row.get("ab_psnr") == float("inf"):
            row["ab_psnr"] = None

    means: dict[str, float | None] = {
        "cdc": scores.checks.cdc,
        "cdc_ab": scores.checks.cdc_ab,
        "warp_error": mean("warp_error"),
        "colourfulness": scores.checks.colourfulness,
    }
    if reference is not None:
        means |= {
            "ab_l1": mean("ab_l1"),
            "ab_psnr": mean("ab_psnr"),
            "colourfulness_reference": mean("colourfulness_reference"),
        }
        cf, cf_ref = means["colourfulness"], means["colourfulness_reference"]
        means["colourfulness_ratio"] = cf / cf_ref if cf is not None and cf_ref else None
    return {
        "schema": SCHEMA,
        "output": str(output),
        "reference": None if reference is None else str(reference),
        "frames": scores.frames,
        "mean": means,
        "per_frame": scores.per_frame,
    }


def write_json(document: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(document, indent=1) + "\n")


def find_cuts(path: Path) -> tuple[list[int], list[float | None], int]:
    """(frames that start a new shot, every frame's time in seconds, frame count) of a video,
    by the detector the pipeline uses."""
    times: list[float | None] = []

    def signatures() -> Iterator[np.ndarray]:
        with Source(path) as source:
            for item in source.frames():
                if isinstance(item, av.VideoFrame):
                    layout = Layout(item.format.name, item.width, item.height)
                    pts, base = item.pts, item.time_base
                    times.append(float(pts * base) if pts is not None and base else None)
                    yield signature(luma_view(item, layout), layout.bits)

    cuts = cuts_of(signatures())
    if not times:
        raise VidcolourError(f"{path}: no video frame could be decoded")
    return cuts, times, len(times)
