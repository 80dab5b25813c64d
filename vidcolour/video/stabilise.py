"""Chroma stabilisation: each frame's predicted ab blended with the previous output's ab,
carried along the motion, where the motion is trusted.

For frame t within a shot (flow on the working-size luma, vidcolour/video/flow.py):

    w(t)   = optical flow from frame t back to frame t-1
    ab'    = out(t-1) warped by w(t)          Y' = Y'(t-1) warped by w(t)
    c      = exp(-(|Y'(t) - g Y'| / TAU)^2), 0 where the flow leaves the picture
             (g: the ratio of the frames' mean luma, so exposure flicker is not mismatch)
    out(t) = pred(t) + strength * c * (ab' - pred(t))

So colour follows the picture's motion and holds steady, while occluded or new content (where
the warped luma does not match) takes the fresh prediction. At the first frame of a shot
(vidcolour/video/shots.py) the state resets: out = pred exactly. The recursion averages about
1 / (1 - strength) frames of prediction along each trajectory.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np
import torch

from vidcolour.defaults import STABILISE_STRENGTH
from vidcolour.video.flow import Flow, flow_maps, remap

# DIS's ultrafast preset: a step at 0.53-0.69 of its cost with "fast", every flicker and error
# figure within 1% (docs/BENCHMARKS.md, "The stabiliser's flow"); eval's warp error keeps
# "fast", so that the metric did not move with it.
FLOW_PRESET = cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST
TAU = 24.0  # luma mismatch (8-bit codes, blurred) at which trust falls to 1/e
_SMOOTH_SIGMA = 1.0  # the luma is compared a little blurred, so grain does not read as motion


def flow_luma(y: torch.Tensor) -> np.ndarray:
    """(B, 1, h, w) luma in [0, 1] -> (B, h, w) uint8 codes on the CPU: what the flow sees."""
    return (y[:, 0] * 255).round().clamp(0, 255).byte().cpu().numpy()


def trust(current: np.ndarray, before: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """c of the formula above: how far colour carried along the flow can be trusted, per pixel.

    current: (h, w) float32 luma of this frame; before: the other frame's luma warped onto it
    (changed in place); inside: where the flow stays in the picture. Returns (h, w) float32.
    """
    # Old film's exposure flickers: compare the pictures, not their brightness.
    before *= (current.mean() + 1.0) / (before.mean() + 1.0)
    mismatch = cv2.GaussianBlur(cv2.absdiff(current, before), (0, 0), _SMOOTH_SIGMA)
    weight = np.exp(np.square(mismatch * np.float32(1 / TAU)) * -1)  # float32 throughout
    weight *= inside
    return weight


class Stabiliser:
    """The state of one stream of frames (one per video, or per field of interlaced video)."""

    def __init__(
        self, strength: float = STABILISE_STRENGTH, flow_preset: int = FLOW_PRESET
    ) -> None:
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"strength must be in [0, 1), got {strength}")
        self.strength = strength
        self._flow = Flow(flow_preset)
        self._luma: np.ndarray | None = None  # previous frame, (h, w) uint8
        self._planes: list[np.ndarray] = []  # previous output a, b and luma, (h, w) float32

    def step(self, luma: np.ndarray, ab: np.ndarray, cut: bool) -> np.ndarray:
        """One frame. luma: (h, w) uint8; ab: (2, h, w) float32 Lab units, the prediction;
        cut: the frame starts a shot. Returns the output ab, (2, h, w) float32."""
        current = luma.astype(np.float32)
        if cut or self._luma is None or self.strength == 0:
            out = ab
        else:
            maps, inside = flow_maps(self._flow(luma, self._luma))
            a, b, before = (remap(plane, maps) for plane in self._planes)
            weight = trust(current, before, inside)
            weight *= np.float32(self.strength)
            out = np.stack([p + weight * (c - p) for p, c in zip(ab, (a, b), strict=True)])
        self._luma = luma
        self._planes = [out[0], out[1], current]
        return out

    def state(self) -> list[np.ndarray]:
        """The carried state: the previous frame's luma (uint8) and output a and b (float32);
        empty before the first frame. The arrays are never changed in place."""
        return [] if self._luma is None else [self._luma, *self._planes[:2]]

    def restore(self, state: list[np.ndarray]) -> None:
        """Carry on from ``state`` (from ``state``), as if its frame had just been stepped."""
        if not state:
            self._luma, self._planes = None, []
            return
        self._luma = state[0]
        self._planes = [state[1], state[2], state[0].astype(np.float32)]  # exact: uint8 codes

    def run(self, ab: torch.Tensor, y: torch.Tensor, cuts: list[bool]) -> torch.Tensor:
        """A batch of consecutive frames. ab: (B, 2, h, w) Lab units; y: (B, 1, h, w) luma in
        [0, 1] at the same size; cuts: B flags. Returns ab like the input, on its device."""
        lumas = flow_luma(y)
        preds = ab.float().cpu().numpy()
        outs = [self.step(lumas[i], preds[i], cuts[i]) for i in range(ab.shape[0])]
        return torch.from_numpy(np.stack(outs)).to(ab.device, ab.dtype)


class StabiliseStage:
    """The pipeline's stabilisation stage: one ``Stabiliser`` per stream of pictures (two for
    interlaced video, one per field), steadying each batch's predicted colour in turn."""

    def __init__(self, streams: int, strength: float = STABILISE_STRENGTH) -> None:
        self.stabilisers = [Stabiliser(strength) for _ in range(streams)]

    def __call__(
        self, streams: list[tuple[torch.Tensor, torch.Tensor]], cuts: list[bool]
    ) -> list[torch.Tensor]:
        """streams: (ab, y) of each stream's B consecutive pictures, as ``Stabiliser.run``
        takes them; cuts: B flags, the same for every stream. Returns each stream's ab."""
        parts = zip(self.stabilisers, streams, strict=True)
        return [stabiliser.run(ab, y, cuts) for stabiliser, (ab, y) in parts]

    def state(self) -> dict[str, np.ndarray]:
        """Every stream's carried state (``Stabiliser.state``), as named arrays."""
        return {
            f"stabiliser{i}_{k}": part
            for i, stabiliser in enumerate(self.stabilisers)
            for k, part in enumerate(stabiliser.state())
        }

    def restore(self, state: Mapping[str, np.ndarray]) -> None:
        """Carry on from ``state`` (from ``state``)."""
        for i, stabiliser in enumerate(self.stabilisers):
            parts = [state[f"stabiliser{i}_{k}"] for k in range(3) if f"stabiliser{i}_{k}" in state]
            stabiliser.restore(parts)
