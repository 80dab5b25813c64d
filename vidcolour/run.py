"""``vidcolour run``: inputs (videos or still images) mapped to outputs and colourised."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vidcolour.colouriser import Colouriser
from vidcolour.errors import VidcolourError
from vidcolour.fsutil import atomic_path
from vidcolour.video.pipeline import check_destination, write_error
from vidcolour.video.sink import CONTAINER_CODECS, CONTAINERS, container_for, default_codec

IMAGE_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}
DEFAULT_CONTAINER = {
    "h264": ".mp4",
    "h265": ".mp4",
    "ffv1": ".mkv",
    "prores": ".mov",
    "mpeg4": ".avi",
}


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_FORMATS


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path

    @property
    def image(self) -> bool:
        return is_image(self.src)


def check_pair(src: Path, dst: Path, codec: str | None) -> None:
    """Refuse output types that cannot hold the input or the chosen codec (None: the output
    container's default)."""
    ext = dst.suffix.lower()
    if is_image(src):
        if ext not in IMAGE_FORMATS:
            raise VidcolourError(
                f"{src} is an image: its output needs an image extension "
                f"({', '.join(IMAGE_FORMATS)}), not '{dst.suffix}'"
            )
        return
    if ext in IMAGE_FORMATS:
        raise VidcolourError(
            f"{src} is a video: its output needs a video extension "
            f"({', '.join(CONTAINERS)}), not '{dst.suffix}'"
        )
    container_for(dst, codec or default_codec(dst))


def output_name(src: Path, codec: str | None) -> str:
    """The output file name for ``src`` in an output directory: a still keeps its format, a video
    keeps its container when that can hold ``codec`` and otherwise takes the codec's usual one
    (with no codec: its container, when vidcolour writes that one, otherwise .mp4)."""
    ext = src.suffix.lower()
    if not is_image(src):
        if codec is None:
            ext = ext if ext in CONTAINERS else ".mp4"
        elif codec not in CONTAINER_CODECS.get(ext, set()):
            ext = DEFAULT_CONTAINER[codec]
    return src.stem + ext


def plan_jobs(inputs: Sequence[Path], output: Path, codec: str | None) -> list[Job]:
    """Each input with its output: ``output`` itself for one input, or a file in the directory
    ``output`` (same name; a video keeps its container when it can hold ``codec``)."""
    if not inputs:
        raise VidcolourError("no input given")
    into_dir = output.is_dir() or len(inputs) > 1
    if len(inputs) > 1 and not output.is_dir():
        raise VidcolourError(f"several inputs need -o to be an existing directory, not {output}")
    jobs = []
    for src in inputs:
        dst = output / output_name(src, codec) if into_dir else output
        check_pair(src, dst, codec)
        jobs.append(Job(src, dst))
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.dst in seen:
            raise VidcolourError(
                f"{seen[job.dst]} and {job.src} would both be written to {job.dst}"
            )
        seen[job.dst] = job.src
    return jobs


def read_image(path: Path) -> tuple[np.ndarray, bool]:
    """A still as (H, W) uint8 luma, upright (EXIF orientation applied), and whether it had
    colour."""
    if not path.is_file():
        raise VidcolourError(f"{path}: no such file")
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise VidcolourError(f"{path} is not an image Pillow can read ({exc})") from None
    coloured = False
    if image.mode not in ("L", "1", "I", "I;16", "F", "LA"):
        rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
        coloured = bool(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean() > 2.0)
    if image.mode in ("I", "I;16", "F"):  # 16-bit and float greys: scale to 8 bits
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max() > 255 else 255.0
        return np.clip(values / top * 255 + 0.5, 0, 255).astype(np.uint8), coloured
    return np.asarray(image.convert("L")), coloured


def colourise_image_file(
    colouriser: Colouriser,
    src: Path,
    dst: Path,
    overwrite: bool,
    notify: Callable[[str], None],
) -> None:
    check_destination(src, dst, overwrite)
    grey, coloured = read_image(src)
    if coloured:
        notify(f"{src} already has colour; colourising from its luma alone")
    rgb = colouriser.colourise_image(grey)
    options = {"quality": 95} if IMAGE_FORMATS[dst.suffix.lower()] in ("JPEG", "WEBP") else {}
    try:
        with atomic_path(dst) as tmp:
            Image.fromarray(rgb).save(tmp, format=IMAGE_FORMATS[dst.suffix.lower()], **options)
    except OSError as exc:
        raise write_error(dst, exc) from None
