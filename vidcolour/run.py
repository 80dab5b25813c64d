"""``vidcolour run``: inputs (videos or still images) mapped to outputs and colourised."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vidcolour.colouriser import Colouriser
from vidcolour.errors import VidcolourError
from vidcolour.fsutil import atomic_path, check_destination, write_error
from vidcolour.stills import read_still, write_still
from vidcolour.video.codecs import (
    CODECS,
    CONTAINER_CODECS,
    CONTAINERS,
    container_for,
    default_codec,
)

IMAGE_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
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
            ext = CODECS[codec].extension
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


def colourise_image_file(
    colouriser: Colouriser,
    src: Path,
    dst: Path,
    overwrite: bool,
    notify: Callable[[str], None],
) -> None:
    """Colourise the still ``src`` into ``dst``, keeping its transparency, precision and
    metadata where ``dst``'s format holds them; one notice names what it does not keep."""
    check_destination(src, dst, overwrite)
    still = read_still(src)
    if still.coloured:
        notify(f"{src} already has colour; colourising from its luma alone")
    rgb = colouriser.colourise_grey(still.luma)
    try:
        with atomic_path(dst) as tmp:
            lost = write_still(tmp, IMAGE_FORMATS[dst.suffix.lower()], rgb, still, colouriser.tag)
    except (OSError, ValueError) as exc:  # Pillow's encoders raise ValueError for bad sizes
        raise write_error(dst, exc) from None
    if lost:
        notify(f"{dst} does not keep all of {src.name}: {'; '.join(lost)}")
