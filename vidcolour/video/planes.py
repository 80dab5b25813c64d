"""Planar Y'CbCr frames as numpy arrays, and the coding that maps their codes to colour.

The pipeline reads and writes the planes of PyAV frames directly: the Y' plane is read once and
never written (the output keeps it), and only the two chroma planes are replaced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

import av
import numpy as np

from vidcolour.colour import YCbCrCoding
from vidcolour.tint import is_single_tint

# Planar luma(+chroma) formats the pipeline works on directly; anything else (RGB, packed,
# paletted, big-endian) is converted to one of these when decoded.
_PLANAR = re.compile(r"^(gray|yuvj?(410|411|420|422|440|444)p)(9|10|12|14|16)?(le)?$")

# AVColorSpace values declared by streams (libavutil/pixfmt.h).
_MATRIX_OF_COLORSPACE = {1: "bt709", 5: "bt601", 6: "bt601", 9: "bt2020", 10: "bt2020"}
RANGE_MPEG, RANGE_JPEG = 1, 2  # AVColorRange


def is_planar_yuv(pix_fmt: str) -> bool:
    match = _PLANAR.match(pix_fmt)
    return match is not None and (match.group(3) is None or match.group(4) == "le")


@dataclass(frozen=True)
class Layout:
    """Geometry and sample type of a planar frame format."""

    pix_fmt: str
    width: int
    height: int

    @property
    def format(self) -> av.VideoFormat:
        return av.VideoFormat(self.pix_fmt)

    @property
    def gray(self) -> bool:
        return self.pix_fmt.startswith("gray")

    @property
    def bits(self) -> int:
        return int(self.format.components[0].bits)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.bits == 8 else np.dtype("<u2")

    @property
    def chroma_size(self) -> tuple[int, int]:
        """(height, width) of each chroma plane."""
        fmt = self.format
        return fmt.chroma_height(self.height), fmt.chroma_width(self.width)


def plane_array(
    plane: av.video.plane.VideoPlane, height: int, width: int, dtype: np.dtype
) -> np.ndarray:
    """A writable (height, width) view of a plane, without its line padding."""
    flat = np.frombuffer(cast(Any, plane), dtype=dtype)
    return flat.reshape(height, plane.line_size // dtype.itemsize)[:, :width]


def luma_view(frame: av.VideoFrame, layout: Layout) -> np.ndarray:
    """The Y' plane: an (H, W) uint8 or uint16 view of the frame's codes."""
    return plane_array(frame.planes[0], layout.height, layout.width, layout.dtype)


def chroma_spread(frame: av.VideoFrame, layout: Layout) -> float:
    """Mean distance of Cb and Cr from neutral grey, in 8-bit code units (0 for grey frames)."""
    if layout.gray:
        return 0.0
    h, w = layout.chroma_size
    mid = 2 ** (layout.bits - 1)
    scale = 2 ** (layout.bits - 8)
    spread = [
        np.abs(plane_array(frame.planes[i], h, w, layout.dtype).astype(np.float32) - mid).mean()
        for i in (1, 2)
    ]
    return float(max(spread)) / scale


def is_toned(frame: av.VideoFrame, layout: Layout) -> bool:
    """Whether the frame's chroma is one tint (sepia, ...), not colour (vidcolour/tint.py)."""
    if layout.gray:
        return False
    h, w = layout.chroma_size
    mid = 2 ** (layout.bits - 1)
    u, v = (
        plane_array(frame.planes[i], h, w, layout.dtype).astype(np.float32) - mid for i in (1, 2)
    )
    return is_single_tint(u, v)


def coding_of(frame: av.VideoFrame, layout: Layout) -> YCbCrCoding:
    """How the frame's codes map to R'G'B'. Unspecified matrices follow the players' convention
    (BT.709 from 720 lines up, BT.601 below); grey formats without a range tag are full range."""
    matrix = _MATRIX_OF_COLORSPACE.get(frame.colorspace)
    if matrix is None:
        matrix = "bt709" if layout.height >= 720 else "bt601"
    if layout.pix_fmt.startswith("yuvj"):
        full = True
    elif layout.gray:
        full = frame.color_range != RANGE_MPEG
    else:
        full = frame.color_range == RANGE_JPEG
    return YCbCrCoding(matrix=matrix, full_range=full, bits=layout.bits)
