"""The inference API: a trained generator that colourises images and videos.

    from vidcolour import Colouriser
    colouriser = Colouriser.load()                  # the bundled model, CUDA when present
    rgb = colouriser.colourise_image(grey_image)     # uint8 RGB in, uint8 RGB out
    colouriser.colourise_video("reel.mp4", "colour.mp4")

The Colouriser sits above its generator (vidcolour/nets) and below nothing: it predicts ab for
L (vidcolour/predict.py: at a working size, resized back), colourises stills itself and hands
videos to the pipeline (vidcolour/video/pipeline.py), whose colour stage it feeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from vidcolour._version import __version__
from vidcolour.colour import denormalise_ab, grey_to_l, lab_to_rgb, normalise_l
from vidcolour.defaults import MAX_SATURATION
from vidcolour.devices import autocast_dtype, resolve_device
from vidcolour.errors import VidcolourError
from vidcolour.model_files import open_model
from vidcolour.nets import Generator, fold_for_prediction
from vidcolour.perf import keep_freed_memory
from vidcolour.predict import CompiledGenerator, Forward, predict_resized, working_size

if TYPE_CHECKING:
    from vidcolour.video.pipeline import VideoReport

DEFAULT_RESOLUTION = 256  # the training size


class Colouriser:
    """A generator on a device, ready to colourise."""

    def __init__(
        self,
        generator: Generator,
        *,
        name: str = "generator",
        sha256: str | None = None,
        device: str | torch.device = "cpu",
        precision: str = "auto",
        resolution: int = DEFAULT_RESOLUTION,
        saturation: float = 1.0,
        compiled: bool = False,
    ) -> None:
        if resolution < 16:
            raise VidcolourError(f"resolution {resolution} is too small (at least 16 px)")
        if not 0.0 <= saturation <= MAX_SATURATION:
            raise VidcolourError(f"saturation must be in [0, {MAX_SATURATION}], got {saturation}")
        self.device = torch.device(device)
        fold_for_prediction(generator)
        # channels-last: oneDNN's layout (the lite0 encoder's depthwise convolutions run 1.9x
        # faster in it; torch's stubs do not list the argument, which Module.to accepts)
        layout = {"memory_format": torch.channels_last}
        self.generator = generator.to(self.device, **layout).eval()  # type: ignore[call-overload]
        # what predicts: the generator itself, or (--compile) the same under torch.compile
        self.forward: Forward = CompiledGenerator(self.generator) if compiled else self.generator
        self.name = name
        self.sha256 = sha256
        self.dtype = autocast_dtype(self.device, precision)
        self.resolution = resolution
        self.saturation = saturation

    @classmethod
    def load(
        cls,
        model: str | Path | None = None,
        device: str = "auto",
        *,
        precision: str = "auto",
        resolution: int = DEFAULT_RESOLUTION,
        saturation: float = 1.0,
        compiled: bool = False,
    ) -> Colouriser:
        """``model``: a bundled model's name, a weights file, a checkpoint or a run directory;
        None is the bundled default. ``device``: auto (CUDA when present), cpu or cuda.
        ``saturation``: gain on the predicted chroma (ab), 1 as predicted, 0 grey.
        ``compiled``: predict through ``torch.compile`` (predict.CompiledGenerator): faster
        once compiled, a compile per working size first; worth it for films, not for stills.
        On the CPU this also tells glibc to keep freed memory (``perf.keep_freed_memory``):
        +3-15% per frame, as no batch pays page faults re-zeroing its activations.
        """
        torch_device = resolve_device(device)
        found = open_model(model)
        colouriser = cls(
            found.generator,
            name=found.name,
            sha256=found.sha256,
            device=torch_device,
            precision=precision,
            resolution=resolution,
            saturation=saturation,
            compiled=compiled,
        )
        if colouriser.device.type == "cpu":
            keep_freed_memory()
        return colouriser

    @property
    def tag(self) -> str:
        """What the output's metadata says made it."""
        digest = f"; sha256 {self.sha256}" if self.sha256 else ""
        return f"vidcolour {__version__}; model {self.name}{digest}"

    @property
    def identity(self) -> str:
        """The tag and every setting that changes the colour: what a film's finished segments
        are made with (video/segments.py). Not the device: a job may move to another node."""
        settings = f"resolution {self.resolution}; {self.dtype}; saturation {self.saturation}"
        return f"{self.tag}; {settings}"

    @property
    def compiled(self) -> bool:
        """Whether the model runs under ``torch.compile`` (``--compile``)."""
        return isinstance(self.forward, CompiledGenerator)

    # ---------------------------------------------------------------------- the prediction
    def working_size(self, height: int, width: int) -> tuple[int, int]:
        g = self.generator
        return working_size(height, width, self.resolution, g.size_multiple, g.min_size)

    @torch.inference_mode()
    def predict_ab(self, L: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """ab for lightness ``L``.

        L: (B, 1, H, W) float32 in [0, 100] on ``self.device``. The generator runs at
        ``size`` (default: the working size of H x W). Returns ab (B, 2, H, W) float32 in Lab
        units, resized back to H x W, times ``saturation``: a gain on the prediction itself,
        before any stabilisation sees it.
        """
        size = size or self.working_size(*L.shape[-2:])
        ab = denormalise_ab(predict_resized(self.forward, normalise_l(L), size, self.dtype))
        if self.saturation != 1.0:
            ab = ab * self.saturation
        return ab

    # ----------------------------------------------------------------------------- the API
    def colourise_image(self, image: np.ndarray | Image.Image) -> np.ndarray:
        """A colour version of a greyscale image.

        image: uint8 (H, W) or (H, W, 3) array, or a PIL image. Colour input is reduced to its
        luma (BT.601, as PIL does) first. Returns (H, W, 3) uint8 RGB whose Lab L is the input's.
        """
        grey = _grey_array(image)
        rgb = self.colourise_grey(np.array(grey, np.float32) / 255)
        return np.round(rgb * 255).clip(0, 255).astype(np.uint8)

    @torch.inference_mode()
    def colourise_grey(self, y: np.ndarray) -> np.ndarray:
        """The colour version of a grey picture at full precision (16-bit stills need more than
        ``colourise_image``'s 8 bits).

        y: (H, W) float32 in [0, 1], gamma-encoded grey (sRGB transfer). Returns (H, W, 3)
        float32 sRGB in [0, 1] whose Lab L is the grey's (up to the gamut clip).
        """
        L = grey_to_l(torch.from_numpy(y).to(self.device)[None, None])
        ab = self.predict_ab(L)
        rgb = lab_to_rgb(torch.cat([L, ab], dim=1))[0]
        return rgb.permute(1, 2, 0).cpu().numpy()

    def colourise_video(self, src: str | Path, dst: str | Path, **options: Any) -> VideoReport:
        """Colourise the video ``src`` into ``dst``; options are those of ``VideoOptions``
        (codec, crf, preset, batch_size, overwrite). Returns what was done."""
        # Imported here so that importing the package does not load PyAV and the pipeline.
        from vidcolour.video.pipeline import VideoOptions, colourise_video

        return colourise_video(self, Path(src), Path(dst), VideoOptions(**options))


def _grey_array(image: np.ndarray | Image.Image) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("L") if image.mode != "L" else image)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise VidcolourError("colourise_image takes a uint8 array or a PIL image")
    if image.ndim == 3 and image.shape[2] == 3:
        return np.asarray(Image.fromarray(image).convert("L"))
    if image.ndim != 2:
        raise VidcolourError(f"colourise_image takes (H, W) or (H, W, 3) arrays, not {image.shape}")
    return image
