"""Dense optical flow on luma, and warping by it: OpenCV's DIS flow (Kroeger et al., ECCV 2016).

Why DIS: it is a maintained, CPU-real-time dense flow (2.5 ms for a 640x256 frame at its
"fast" preset on this project's machine, benchmarks/stabilise.py) that needs no learned
weights, so it works offline and the same on every machine; learned flows (RAFT and kin)
need weights we cannot download at run time and a GPU to be fast. The pipeline computes flow
on the luma, which it has exactly, never on the colour it is still making.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np


class Flow:
    """DIS optical flow, a function of the two frames alone: each call makes a new OpenCV
    estimator, because one estimator carries buffers from call to call that change its result
    (1e-4 px on a synthetic pair; through the stabiliser, up to 17 chroma codes with the tiny
    test model, under 1e-6 in every figure of benchmarks/keyframes.py with the bundled one),
    which would make a film's colour depend on where its processing started
    (video/segments.py). A new one costs no measurable time: 1.68 ms against 1.70 reused, a
    448x256 pair, the 2-core Xeon of docs/BENCHMARKS.md."""

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_FAST) -> None:
        self.preset = preset

    def __call__(self, to: np.ndarray, source: np.ndarray) -> np.ndarray:
        """Flow from ``to`` back to ``source``: to[y, x] ~ source[y + f[..., 1], x + f[..., 0]].

        to, source: (H, W) uint8. Returns (H, W, 2) float32 in pixels.
        """
        return cv2.DISOpticalFlow_create(self.preset).calc(to, source, None)


def flow_maps(flow: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Where each pixel of the frame ``flow`` was computed for comes from: (x map, y map) for
    ``remap``, and a mask of the pixels whose source lies inside the picture.

    flow: (H, W, 2) from ``Flow``. Returns ((H, W) float32 x2, (H, W) bool).
    """
    h, w = flow.shape[:2]
    xs, ys = _grid(h, w)
    map_x, map_y = xs + flow[..., 0], ys + flow[..., 1]
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    return (map_x, map_y), inside


def remap(image: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``image`` ((H, W) or (H, W, C), float32 or uint8) moved by ``flow_maps`` (bilinear)."""
    return cv2.remap(image, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` moved onto the frame ``flow`` was computed for, and the inside mask."""
    maps, inside = flow_maps(flow)
    return remap(image, maps), inside


@functools.lru_cache(maxsize=4)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return xs, ys


def consistent(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Pixels whose flow is confirmed by the flow the other way (not occluded): the forward-
    backward check of Sundaram et al. (ECCV 2010), as Lai et al. (2018) use for warp error.

    forward: flow of frame t to t+1's pixels (``Flow()(t+1, t)``); backward: the reverse
    (``Flow()(t, t+1)``). Returns (H, W) bool for the pixels of frame t+1.
    """
    back_at, inside = warp(backward, forward)
    total = forward + back_at
    bound = 0.01 * ((forward**2).sum(-1) + (back_at**2).sum(-1)) + 0.5
    return inside & ((total**2).sum(-1) <= bound)
