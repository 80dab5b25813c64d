"""Display orientation: how a coded picture is turned to be shown.

A phone's portrait video is coded lying on its side (272x640, say) with a display matrix that
turns it upright. The model must see the picture as it is displayed, so the colour stage
turns L upright, predicts ab, and turns ab back onto the coded grid where the chroma planes
are (``video.colourise.ColourStage``); the output keeps the coded planes and the input's matrix.

FFmpeg's display matrix (libavutil/display.h, nine int32, row-major; the 2x2 part 16.16
fixed point) maps a coded pixel (x, y), y pointing down, to the displayed one:

    x' = m[0] x + m[3] y (+ an offset)        y' = m[1] x + m[4] y (+ an offset)

The offsets only keep the picture at the origin. Where that 2x2 part is a signed permutation
(a rotation by a multiple of 90 degrees, mirrored or not: EXIF's eight orientations), the turn
is a transpose or not, then flips; other matrices (a rotation by 30 degrees, say) are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

if TYPE_CHECKING:
    import av

Matrix = tuple[int, ...]  # the nine int32 of a display matrix

IDENTITY: Matrix = (1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30)
# An entry this small against the 2x2 part's largest counts as zero: within about a degree of
# a right angle, as FFmpeg's own autorotation rounds.
_ZERO = 0.02


@dataclass(frozen=True)
class Orientation:
    """Coded picture -> displayed picture: transposed (rows become columns) if ``transpose``,
    then turned upside down if ``flip_rows`` and mirrored left to right if ``flip_cols``."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    @property
    def identity(self) -> bool:
        return not (self.transpose or self.flip_rows or self.flip_cols)

    def turned(self, size: tuple[int, int]) -> tuple[int, int]:
        """(height, width) of a picture of ``size`` once turned, either way."""
        return (size[1], size[0]) if self.transpose else size

    def upright(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., H, W) on the coded grid. Returns (..., H', W') as displayed, contiguous."""
        if self.transpose:
            x = x.transpose(-2, -1)
        return self._flip(x).contiguous()

    def coded(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of ``upright``: (..., H', W') as displayed -> (..., H, W) coded."""
        x = self._flip(x)
        if self.transpose:
            x = x.transpose(-2, -1)
        return x.contiguous()

    def _flip(self, x: torch.Tensor) -> torch.Tensor:
        dims = [d for d, flip in ((-2, self.flip_rows), (-1, self.flip_cols)) if flip]
        return x.flip(dims) if dims else x


def display_matrix(frame: av.VideoFrame) -> Matrix | None:
    """The frame's display matrix (decoders attach the stream's to every frame), or None."""
    try:  # PyAV's stubs know only the motion vectors of side_data
        data = cast(Any, frame.side_data)["DISPLAYMATRIX"]
    except KeyError:
        return None
    return tuple(int(v) for v in np.frombuffer(bytes(data), np.int32)[:9])


def orientation_of(matrix: Matrix | None) -> Orientation | None:
    """The turn a display matrix describes; None when it is not a multiple of 90 degrees."""
    if matrix is None:
        return Orientation()
    m = np.array([matrix[0], matrix[1], matrix[3], matrix[4]], np.float64)
    top = np.abs(m).max()
    if top == 0:
        return None
    a, b, c, d = np.where(np.abs(m) < _ZERO * top, 0.0, m)
    if b == c == 0 and a and d:
        return Orientation(False, flip_rows=bool(d < 0), flip_cols=bool(a < 0))
    if a == d == 0 and b and c:
        return Orientation(True, flip_rows=bool(b < 0), flip_cols=bool(c < 0))
    return None
