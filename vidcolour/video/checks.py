"""Checks of a colourised video that need no ground truth, computed as its frames stream past.

- colourfulness: Hasler and Suesstrunk's M3 of each output frame (``metrics.colourfulness``),
  averaged over frames. About 0 for a grey picture; 30-60 for typical colour photographs.
- CDC, colour distribution consistency (Liu et al., 2021): the Jensen-Shannon divergence
  (base 2, so in [0, 1]) between the per-channel colour histograms of frames t and t + k, averaged
  over the three sRGB channels and over t, for k = 1, 2 and 4; CDC is the mean of the three.
  0 for a video whose colour distribution never changes; flicker raises it.

Both are computed at the chroma planes' resolution (the colour the pipeline actually made),
with the luma averaged down to it, and on at most ``MAX_ROWS`` rows so that a 4K film costs
what an SD one does. Histograms: 256 bins of 8-bit sRGB per channel. docs/METRICS.md.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from vidcolour.colour import YCbCrCoding, rgb_to_lab, ycbcr_to_rgb
from vidcolour.metrics import ab_histograms, colourfulness

CDC_STEPS = (1, 2, 4)
HIST_BINS = 256
MAX_ROWS = 180


def rgb_histograms(rgb: torch.Tensor) -> torch.Tensor:
    """Per-frame, per-channel histograms of sRGB, each normalised to sum 1.

    rgb: (B, 3, H, W) float in [0, 1] -> (B, 3, 256) float64.
    """
    b = rgb.shape[0]
    index = (rgb.double() * (HIST_BINS - 1)).round().long().clamp_(0, HIST_BINS - 1).flatten(2)
    offset = torch.arange(3 * b).view(b, 3, 1) * HIST_BINS
    counts = torch.bincount((index + offset).flatten(), minlength=3 * b * HIST_BINS)
    counts = counts.view(b, 3, HIST_BINS).double()
    return counts / counts.sum(-1, keepdim=True)


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence, base 2, of distributions along the last axis: in [0, 1]."""
    m = (p + q) / 2

    def kl(x: torch.Tensor) -> torch.Tensor:
        ratio = torch.where(x > 0, x / m.clamp_min(1e-300), torch.ones_like(x))
        return (x * torch.log2(ratio)).sum(-1)

    return (kl(p) + kl(q)) / 2


def codes_to_rgb(
    luma: np.ndarray,
    cb: np.ndarray,
    cr: np.ndarray,
    coding: YCbCrCoding,
    luma_bits: int | None = None,
) -> torch.Tensor:
    """Frames' sRGB at their chroma resolution, at most ``MAX_ROWS`` rows (every k-th row and
    column above that).

    luma: (B, H, W) codes of ``luma_bits`` (default: the coding's), averaged down to the chroma
    size; cb, cr: (B, h, w) codes coded as ``coding``. Returns (B, 3, h', w') float32 in [0, 1].
    """
    h, w = cb.shape[-2:]
    step = max(1, -(-h // MAX_ROWS))
    chroma = [torch.from_numpy(c.astype(np.float32))[:, None, ::step, ::step] for c in (cb, cr)]
    y = torch.from_numpy(luma.astype(np.float32))[:, None]
    y = F.adaptive_avg_pool2d(y, (h, w))[..., ::step, ::step]
    y = y * 2.0 ** (coding.bits - (luma_bits or coding.bits))
    return ycbcr_to_rgb(y, chroma[0], chroma[1], coding)


@dataclass
class Consistency:
    """Running CDC of one kind of histogram: keeps only the last four frames' histograms, so
    memory is constant whatever the length."""

    _history: deque[torch.Tensor] = field(default_factory=lambda: deque(maxlen=max(CDC_STEPS)))
    _js_sum: dict[int, float] = field(default_factory=lambda: dict.fromkeys(CDC_STEPS, 0.0))
    _js_count: dict[int, int] = field(default_factory=lambda: dict.fromkeys(CDC_STEPS, 0))

    def add(self, histograms: torch.Tensor) -> None:
        """histograms: (B, C, bins), each normalised, frames in display order."""
        for hist in histograms:
            for k in CDC_STEPS:
                if len(self._history) >= k:
                    js = js_divergence(self._history[-k], hist).mean()
                    self._js_sum[k] += float(js)
                    self._js_count[k] += 1
            self._history.append(hist)

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        """The running sums and the histograms kept, as arrays named ``prefix``_*."""
        state = {
            f"{prefix}_js_sum": np.array([self._js_sum[k] for k in CDC_STEPS], np.float64),
            f"{prefix}_js_count": np.array([self._js_count[k] for k in CDC_STEPS], np.int64),
        }
        if self._history:
            state[f"{prefix}_history"] = torch.stack(list(self._history)).numpy()
        return state

    def restore(self, state: Mapping[str, np.ndarray], prefix: str) -> None:
        """Carry on from ``state`` (from ``state``)."""
        for i, k in enumerate(CDC_STEPS):
            self._js_sum[k] = float(state[f"{prefix}_js_sum"][i])
            self._js_count[k] = int(state[f"{prefix}_js_count"][i])
        self._history.clear()
        self._history.extend(torch.from_numpy(h) for h in state.get(f"{prefix}_history", ()))

    @property
    def value(self) -> float | None:
        """None before two frames."""
        means = [self._js_sum[k] / self._js_count[k] for k in CDC_STEPS if self._js_count[k]]
        return sum(means) / len(means) if means else None


@dataclass
class TemporalChecks:
    """Running colourfulness and CDC over a stream of frames, in display order.

    ``cdc`` is on sRGB histograms, as CDC is defined; ``cdc_ab``, with ``chroma=True``, the same
    on Lab a and b (219 bins over [-110, 110], as metrics.ab_histograms), which sees only the
    colour a colouriser made: the luma, the same for every colourisation of one film, moves the
    sRGB histograms too.
    """

    chroma: bool = False
    frames: int = 0
    colourfulness_sum: float = 0.0
    rgb: Consistency = field(default_factory=Consistency)
    ab: Consistency = field(default_factory=Consistency)

    def add_rgb(self, rgb: torch.Tensor) -> None:
        """Frames in display order. rgb: (B, 3, H, W) float in [0, 1]."""
        self.frames += rgb.shape[0]
        self.colourfulness_sum += float(colourfulness(rgb).double().sum())
        self.rgb.add(rgb_histograms(rgb))
        if self.chroma:
            counts = ab_histograms(rgb_to_lab(rgb)[:, 1:])
            self.ab.add(counts / counts.sum(-1, keepdim=True))

    def add_codes(
        self,
        luma: np.ndarray,
        cb: np.ndarray,
        cr: np.ndarray,
        coding: YCbCrCoding,
        luma_bits: int | None = None,
    ) -> None:
        """Frames as Y'CbCr codes: see ``codes_to_rgb``."""
        self.add_rgb(codes_to_rgb(luma, cb, cr, coding, luma_bits))

    def state(self) -> dict[str, np.ndarray]:
        """Everything the checks carry, as named arrays: a film made in segments
        (video/segments.py) resumes its checks where the last finished segment left them."""
        return {
            "checks_frames": np.array(self.frames),
            "checks_colourfulness_sum": np.array(self.colourfulness_sum),
            **self.rgb.state("checks_rgb"),
            **self.ab.state("checks_ab"),
        }

    def restore(self, state: Mapping[str, np.ndarray]) -> None:
        """Carry on from ``state`` (from ``state``)."""
        self.frames = int(state["checks_frames"])
        self.colourfulness_sum = float(state["checks_colourfulness_sum"])
        self.rgb.restore(state, "checks_rgb")
        self.ab.restore(state, "checks_ab")

    @property
    def colourfulness(self) -> float | None:
        return self.colourfulness_sum / self.frames if self.frames else None

    @property
    def cdc(self) -> float | None:
        """None for a video of one frame."""
        return self.rgb.value

    @property
    def cdc_ab(self) -> float | None:
        return self.ab.value if self.chroma else None
