"""The one prediction path of ``run``, ``eval`` and training validation: L at a working size
in, ab at the picture's size out.

The generator sees L at a working resolution (its shorter side ``resolution`` px, both sides
multiples of the generator's stride, as in training); ab comes back at that resolution and is
resized to wherever colour is needed. Colour is smooth, so this costs nothing visible, and the
picture's detail comes from the untouched luma.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from vidcolour.nets import Generator


def working_size(
    height: int, width: int, resolution: int, multiple: int, min_size: int
) -> tuple[int, int]:
    """The generator's input size for a height x width picture: the shorter side scaled to
    ``resolution``, each side then rounded to the nearest multiple of the generator's stride
    (a slight stretch, as in training, rather than padding)."""
    scale = resolution / min(height, width)

    def fit(side: int) -> int:
        return max(min_size, multiple, int(side * scale / multiple + 0.5) * multiple)

    return fit(height), fit(width)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """x: (B, C, H, W) float resized to ``size`` (bilinear, antialiased where it shrinks);
    unchanged when it already has that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    # Antialiasing filters what shrinks; enlarging in both directions needs none (and is 3x
    # faster without: ab back to a 1080p frame's chroma, 2.2 -> 0.7 ms; values within 0.003).
    shrinks = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinks)


def predict_resized(
    generator: Generator, l: torch.Tensor, size: tuple[int, int], dtype: torch.dtype | None
) -> torch.Tensor:
    """ab for l through the generator at a working size.

    l: (B, 1, H, W) float in [-1, 1] (model units) on the generator's device. L is resized to
    ``size`` (a working size), the generator runs under autocast to ``dtype`` (None: float32),
    and ab comes back resized to H x W: (B, 2, H, W) float32 in [-1, 1]. The input goes in
    channels-last: oneDNN's convolutions (depthwise ones above all) run far faster in it on
    the CPU, and a generator whose weights are also channels-last (``Colouriser``) never
    converts a layer's layout.
    """
    h, w = l.shape[-2:]
    device_type = l.device.type
    x = resize(l, size).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
        ab = generator(x)
    return resize(ab.float(), (h, w))


def working_predict(
    generator: Generator, resolution: int, dtype: torch.dtype | None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``predict_resized`` at each picture's working size for ``resolution``: l -> ab, both in
    model units (evaluate.Predict)."""

    def predict(l: torch.Tensor) -> torch.Tensor:
        h, w = l.shape[-2:]
        size = working_size(h, w, resolution, generator.size_multiple, generator.min_size)
        return predict_resized(generator, l, size, dtype)

    return predict
