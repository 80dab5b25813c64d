"""The inference API: a trained generator that colourises images and videos.

    from vidcolour import Colouriser
    colouriser = Colouriser.load()                  # the bundled model, CUDA when present
    rgb = colouriser.colourise_image(grey_image)     # uint8 RGB in, uint8 RGB out
    colouriser.colourise_video("reel.mp4", "colour.mp4")

The generator sees L at a working resolution (its shorter side ``resolution`` px, both sides
multiples of the generator's stride, as in training); ab comes back at that resolution and is
resized to wherever colour is needed. Colour is smooth, so this costs nothing visible, and the
picture's detail comes from the untouched luma.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vidcolour.checkpoint import checkpoint_generator, latest_checkpoint
from vidcolour.colour import (
    YCbCrCoding,
    denormalise_ab,
    grey_to_l,
    lab_to_chroma,
    lab_to_rgb,
    normalise_l,
    site_lightness,
)
from vidcolour.config import to_dict
from vidcolour.devices import autocast_dtype, resolve_device
from vidcolour.errors import VidcolourError
from vidcolour.nets import Generator, fold_for_inference
from vidcolour.resources import resolve_model
from vidcolour.sniff import describe, model_file_kind
from vidcolour.video.orientation import Orientation
from vidcolour.weights import load_generator

if TYPE_CHECKING:
    from vidcolour.video.pipeline import VideoReport

DEFAULT_RESOLUTION = 256  # the training size
MAX_SATURATION = 4.0  # a gain beyond which every colour is clipped to the gamut's edge

# A step between prediction and chroma that sees a batch's ab (B, 2, h, w) in Lab units at the
# working size with its luma y (B, 1, h, w) in [0, 1], and returns ab of the same shape
# (vidcolour/video/stabilise.py).
Smoother = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelFile:
    """A generator read from disk, and what identifies it."""

    generator: Generator  # folded, eval mode, float32
    name: str
    path: Path  # the file the weights came from
    sha256: str
    config: dict[str, Any]
    run_dir: Path | None = None  # when given as a training run directory


def open_model(spec: str | Path | None) -> ModelFile:
    """A generator from a bundled model's name, a .safetensors file, a checkpoint (.pt) or a run
    directory (its newest checkpoint); None is the bundled default model."""
    path = resolve_model(spec)
    run_dir = None
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise VidcolourError(f"{path} holds no checkpoint (expected a run directory)")
        run_dir, path = path, found[0]
    kind = model_file_kind(path)  # by content: a .pt name may hold safetensors
    if kind is None:
        raise VidcolourError(
            f"{path} is not a model file: neither safetensors weights nor a vidcolour "
            f"checkpoint ({describe(path)})"
        )
    if kind == "torch":
        generator, run_config, _ = checkpoint_generator(path)
        config = to_dict(run_config)
        name = run_dir.name if run_dir is not None else f"{run_config.name}@{path.stem}"
    else:
        generator, info = load_generator(path)
        config, name = {"model": {"generator": to_dict(info.config)}}, info.name
    fold_for_inference(generator)
    return ModelFile(generator.eval(), name, path, file_sha256(path), config, run_dir)


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


def predict_resized(
    generator: Generator, l: torch.Tensor, size: tuple[int, int], dtype: torch.dtype | None
) -> torch.Tensor:
    """The one prediction path of ``run``, ``eval`` and training validation.

    l: (B, 1, H, W) float in [-1, 1] (model units) on the generator's device. L is resized to
    ``size`` (a working size), the generator runs under autocast to ``dtype`` (None: float32),
    and ab comes back resized to H x W: (B, 2, H, W) float32 in [-1, 1]. The input goes in
    channels-last: oneDNN's convolutions (depthwise ones above all) run far faster in it on
    the CPU, and a generator whose weights are also channels-last (``Colouriser``) never
    converts a layer's layout.
    """
    h, w = l.shape[-2:]
    device_type = l.device.type
    x = _resize(l, size).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
        ab = generator(x)
    return _resize(ab.float(), (h, w))


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
    ) -> None:
        if resolution < 16:
            raise VidcolourError(f"resolution {resolution} is too small (at least 16 px)")
        if not 0.0 <= saturation <= MAX_SATURATION:
            raise VidcolourError(f"saturation must be in [0, {MAX_SATURATION}], got {saturation}")
        self.device = torch.device(device)
        fold_for_inference(generator)
        # channels-last: oneDNN's layout (the lite0 encoder's depthwise convolutions run 1.9x
        # faster in it; torch's stubs do not list the argument, which Module.to accepts)
        layout = {"memory_format": torch.channels_last}
        self.generator = generator.to(self.device, **layout).eval()  # type: ignore[call-overload]
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
    ) -> Colouriser:
        """``model``: a bundled model's name, a weights file, a checkpoint or a run directory;
        None is the bundled default. ``device``: auto (CUDA when present), cpu or cuda.
        ``saturation``: gain on the predicted chroma (ab), 1 as predicted, 0 grey."""
        torch_device = resolve_device(device)
        found = open_model(model)
        return cls(
            found.generator,
            name=found.name,
            sha256=found.sha256,
            device=torch_device,
            precision=precision,
            resolution=resolution,
            saturation=saturation,
        )

    @property
    def tag(self) -> str:
        """What the output's metadata says made it."""
        from vidcolour import __version__

        digest = f"; sha256 {self.sha256}" if self.sha256 else ""
        return f"vidcolour {__version__}; model {self.name}{digest}"

    # ------------------------------------------------------------------------ the model stage
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
        ab = denormalise_ab(predict_resized(self.generator, normalise_l(L), size, self.dtype))
        if self.saturation != 1.0:
            ab = ab * self.saturation
        return ab

    @torch.inference_mode()
    def video_chroma(
        self,
        luma: np.ndarray,
        source: YCbCrCoding,
        target: YCbCrCoding,
        chroma_size: tuple[int, int],
        fields: bool = False,
        smooth: Smoother | None = None,
        orientation: Orientation | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cb and Cr planes for a batch of frames, from their Y' planes alone.

        luma: (B, H, W) uint8/uint16 Y' codes coded as ``source``. Returns two (B, h, w) arrays
        of codes coded as ``target`` (same matrix and range; its bit depth), h x w =
        ``chroma_size``. With ``fields``, each frame is two interlaced fields, colourised one at
        a time so that the generator never sees the combing between them (the batch the model
        sees is then all top fields, then all bottom ones). ``smooth``, when given, may change
        the predicted ab (at the working size) before it becomes chroma: see ``Smoother``.
        ``orientation``: how the frames are displayed (vidcolour/video/orientation.py). The
        generator and ``smooth`` see each picture upright, as displayed; fields are still the
        coded frame's rows, and the planes returned are on the coded grid, as ``luma`` is.
        """
        y = self._unit_luma(luma, source)
        orientation = orientation or Orientation()
        size = self.working_size(*orientation.turned((y.shape[-2], y.shape[-1])))  # displayed
        if fields:  # both fields of every frame in one batch, then their rows interleaved again
            b = y.shape[0]
            both = torch.cat([y[..., 0::2, :], y[..., 1::2, :]])
            cb, cr = (
                torch.stack([c[:b], c[b:]], dim=-2).flatten(-3, -2)
                for c in self._chroma(
                    both, source, target, _halve(chroma_size), size, smooth, orientation
                )
            )
        else:
            cb, cr = self._chroma(y, source, target, chroma_size, size, smooth, orientation)
        return _codes((cb, cr), target)

    def _chroma(
        self,
        y: torch.Tensor,
        source: YCbCrCoding,
        target: YCbCrCoding,
        chroma_size: tuple[int, int],
        size: tuple[int, int],
        smooth: Smoother | None,
        orientation: Orientation,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        y_work, ab = self._working_ab(y, size, orientation)
        if smooth is not None:
            ab = smooth(ab, y_work)
        return self._ab_to_chroma(y, ab, source, target, chroma_size, orientation)

    def _working_ab(
        self, y: torch.Tensor, size: tuple[int, int], orientation: Orientation
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # The generator's L from the whole picture, upright. Turned at the working size, where
        # it is cheap (resizing commutes with the turn).
        y_work = orientation.upright(_resize(y, orientation.turned(size)))
        return y_work, self.predict_ab(grey_to_l(y_work), size)

    def _ab_to_chroma(
        self,
        y: torch.Tensor,
        ab: torch.Tensor,
        source: YCbCrCoding,
        target: YCbCrCoding,
        chroma_size: tuple[int, int],
        orientation: Orientation,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        L_chroma = site_lightness(y, source, chroma_size)
        ab = _resize(orientation.coded(ab), chroma_size)
        return lab_to_chroma(L_chroma, ab, target)

    # Keyframe-guided colour (vidcolour/video/keyframes.py) needs the two halves apart: the
    # working-size ab of a batch now, its chroma once the keyframe ahead has been seen.
    @torch.inference_mode()
    def video_ab(
        self, luma: np.ndarray, source: YCbCrCoding, orientation: Orientation
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(Y' in [0, 1], ab) at the working size, upright, for a batch of progressive frames.

        luma: (B, H, W) Y' codes coded as ``source``. Returns (B, 1, h, w) and (B, 2, h, w)."""
        y = self._unit_luma(luma, source)
        size = self.working_size(*orientation.turned((y.shape[-2], y.shape[-1])))
        return self._working_ab(y, size, orientation)

    @torch.inference_mode()
    def chroma_from_ab(
        self,
        luma: np.ndarray,
        ab: torch.Tensor,
        source: YCbCrCoding,
        target: YCbCrCoding,
        chroma_size: tuple[int, int],
        orientation: Orientation,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``video_chroma``'s planes from working-size ab that ``video_ab`` gave (and something
        may have changed since)."""
        y = self._unit_luma(luma, source)
        ab = ab.to(self.device)
        chroma = self._ab_to_chroma(y, ab, source, target, chroma_size, orientation)
        return _codes(chroma, target)

    def _unit_luma(self, luma: np.ndarray, source: YCbCrCoding) -> torch.Tensor:
        codes = torch.from_numpy(luma).to(self.device).float()  # codes cross, not floats
        return source.luma_to_unit(codes, in_place=True).unsqueeze(1)  # (B, 1, H, W), [0, 1]

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
        from vidcolour.video.pipeline import VideoOptions, colourise_video

        return colourise_video(self, Path(src), Path(dst), VideoOptions(**options))


def _codes(
    chroma: tuple[torch.Tensor, torch.Tensor], target: YCbCrCoding
) -> tuple[np.ndarray, np.ndarray]:
    """(B, 1, h, w) float Cb, Cr -> (B, h, w) integer codes of ``target``'s depth."""
    dtype = np.uint8 if target.bits == 8 else np.uint16
    top = 2**target.bits - 1
    cb, cr = (c.round().clamp_(0, top).squeeze(1).cpu().numpy().astype(dtype) for c in chroma)
    return cb, cr


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    # Antialiasing filters what shrinks; enlarging in both directions needs none (and is 3x
    # faster without: ab back to a 1080p frame's chroma, 2.2 -> 0.7 ms; values within 0.003).
    shrinks = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinks)


def _halve(size: tuple[int, int]) -> tuple[int, int]:
    return size[0] // 2, size[1]


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
