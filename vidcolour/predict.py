"""The one prediction path of ``run``, ``eval`` and training validation: L at a working size
in, ab at the picture's size out.

The generator sees L at a working resolution (its shorter side ``resolution`` px, both sides
multiples of the generator's stride, as in training); ab comes back at that resolution and is
resized to wherever colour is needed. Colour is smooth, so this costs nothing visible, and the
picture's detail comes from the untouched luma.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from vidcolour.errors import VidcolourError
from vidcolour.nets import Generator

Forward = Callable[[torch.Tensor], torch.Tensor]  # a generator, or one compiled


MAX_ASPECT = 4  # the working size's longer side at most this many times its resolution


def working_size(
    height: int, width: int, resolution: int, multiple: int, min_size: int
) -> tuple[int, int]:
    """The generator's input size for a height x width picture: the shorter side scaled to
    ``resolution``, each side then rounded to the nearest multiple of the generator's stride
    (a slight stretch, as in training, rather than padding). The longer side stays within
    MAX_ASPECT times ``resolution``: a 320x8 strip would otherwise be enlarged to 10240x256."""
    scale = min(resolution / min(height, width), MAX_ASPECT * resolution / max(height, width))

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
    generator: Forward, l: torch.Tensor, size: tuple[int, int], dtype: torch.dtype | None
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


class Compiled:
    """A function under ``torch.compile`` for inference (``run --compile``), one compile per
    input shape (seconds: a C++ compiler's work on the CPU, cached across runs by Inductor).

    A batch smaller than the largest seen is padded up to it (every tensor argument, along
    its first dimension, with copies of its last item) and the result cut back: a film's last,
    shorter batch costs no second compile. Calls are serialised: ``batch --jobs`` threads
    share one model, and compiling is not something two threads should do at once. A failure
    is one line: Inductor's own messages run to pages.
    """

    def __init__(self, fn: Callable[..., Any], device: torch.device, **options: Any) -> None:
        check_compiler(device)
        self._compiled = torch.compile(fn, dynamic=False, **options)
        self._batch = 0
        self._lock = threading.Lock()

    def __call__(self, *args: Any) -> Any:
        n = next(a for a in args if isinstance(a, torch.Tensor)).shape[0]
        with self._lock:
            self._batch = max(self._batch, n)
            args = tuple(_padded(a, self._batch) for a in args)
            try:
                out = self._compiled(*args)
            except Exception as error:
                first = str(error).strip().splitlines()[0] if str(error).strip() else ""
                raise VidcolourError(
                    f"--compile failed ({type(error).__name__}: {first[:200]}); "
                    "run without --compile"
                ) from error
        return tuple(o[:n] for o in out) if isinstance(out, tuple) else out[:n]


def _padded(a: Any, batch: int) -> Any:
    """``a`` in one dense layout (channels-last if it is so already, else contiguous: what
    the compiled code's stride guards see stays the same from call to call) with copies of
    its last item up to ``batch`` items; anything but a tensor as it is."""
    if not isinstance(a, torch.Tensor):
        return a
    channels_last = a.dim() == 4 and a.is_contiguous(memory_format=torch.channels_last)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    if a.shape[0] < batch:
        a = torch.cat([a, a[-1:].expand(batch - a.shape[0], *a.shape[1:])])
    return a.contiguous(memory_format=layout)


class CompiledGenerator(Compiled):
    """A generator under ``torch.compile`` (``Compiled``): Inductor with its weights frozen as
    constants, so that on the CPU oneDNN packs them once and fuses each convolution with what
    follows (about 1.3x the eager generator on a 2-core Xeon, docs/BENCHMARKS.md)."""

    def __init__(self, generator: Generator) -> None:
        if generator.training:
            raise ValueError("compile a generator in eval mode")
        device = next(generator.parameters()).device
        super().__init__(generator, device, options={"freezing": True})


def check_compiler(device: torch.device) -> None:
    """On the CPU, Inductor writes C++: without a compiler ``--compile`` cannot work, and the
    user should hear so before any output is begun rather than at the first frame."""
    if device.type != "cpu":
        return
    compiler = os.environ.get("CXX") or "g++"
    if shutil.which(compiler) is None:
        raise VidcolourError(
            f"--compile needs a C++ compiler on the CPU ('{compiler}' not found; set CXX or "
            "install g++), or run without --compile"
        )
