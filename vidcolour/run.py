"""``vidcolour run``: inputs (videos or still images) mapped to outputs and colourised."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vidcolour.errors import UsageError, VidcolourError
from vidcolour.fsutil import atomic_path, check_destination, write_error
from vidcolour.stills import IMAGE_FORMATS, read_still, write_still
from vidcolour.tint import colour_notice
from vidcolour.video.codecs import (
    CODECS,
    CONTAINER_CODECS,
    CONTAINERS,
    check_encoder_options,
    container_for,
    default_codec,
)

if TYPE_CHECKING:  # the command line plans its jobs before it loads torch
    from vidcolour.colouriser import Colouriser


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
            raise UsageError(
                f"{src} is an image: its output needs an image extension "
                f"({', '.join(IMAGE_FORMATS)}), not '{dst.suffix}'"
            )
        return
    if ext in IMAGE_FORMATS:
        raise UsageError(
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


def plan_jobs(
    inputs: Sequence[Path],
    output: str | Path,
    codec: str | None,
    *,
    crf: int | None = None,
    preset: str | None = None,
    tune: str | None = None,
) -> list[Job]:
    """Each input with its output: ``output`` itself for one input, or a file in the directory
    ``output`` (same name; a video keeps its container when it can hold ``codec``). ``output``
    is a directory when it is one, when there are several inputs, or when it ends with a
    slash; a missing one is made by ``make_output_folder`` when the work starts (a refusal
    before then leaves no empty folder behind). Inputs that do not exist
    and encoder options that do not suit a video's codec fail here, before a model loads or a
    frame is decoded (a typo in the third name of a queue stops it at once, not hours in)."""
    if not inputs:
        raise VidcolourError("no input given")
    for src in inputs:
        if not src.exists():
            raise VidcolourError(f"{src}: no such file")
        if src.is_dir():
            raise UsageError(
                f"{src} is a directory: run takes video and image files "
                f"(`vidcolour batch {src} -o OUT` colourises a folder)"
            )
    as_dir = str(output).endswith(("/", os.sep))
    output = Path(output)
    if len(inputs) > 1 and not (output.is_dir() or as_dir):
        raise UsageError(
            f"several inputs need -o to be a directory, not {output} (end it with / to create it)"
        )
    if output.exists() and not output.is_dir() and as_dir:
        raise UsageError(f"{output} is a file, not a directory")
    into_dir = as_dir or output.is_dir() or len(inputs) > 1
    jobs = []
    for src in inputs:
        dst = output / output_name(src, codec) if into_dir else output
        check_pair(src, dst, codec)
        if not is_image(src):
            check_encoder_options(codec or default_codec(dst), crf, preset, tune)
        jobs.append(Job(src, dst))
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.dst in seen:
            raise VidcolourError(
                f"{seen[job.dst]} and {job.src} would both be written to {job.dst}"
            )
        seen[job.dst] = job.src
    return jobs


def make_output_folder(output: str | Path, jobs: Sequence[Job]) -> None:
    """Make ``output`` if ``plan_jobs`` made it the jobs' folder and it is missing. A single
    output file's folder is never made: a missing one is refused (a typo in its name)."""
    folder = Path(output)
    if folder.is_dir() or any(job.dst.parent != folder for job in jobs):
        return
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise VidcolourError(f"cannot create {folder}: {exc.strerror}") from None


def colourise_image_file(
    colouriser: Colouriser,
    src: Path,
    dst: Path,
    overwrite: bool,
    notify: Callable[[str], None],
    compare: bool = False,
) -> tuple[int, int]:
    """Colourise the still ``src`` into ``dst``, keeping its transparency, precision and
    metadata where ``dst``'s format holds them; one notice names what it does not keep.
    compare: the grey input left of the colour, twice as wide, for review. Returns the
    written picture's (width, height)."""
    check_destination(src, dst, overwrite)
    still = read_still(src)
    if still.coloured:
        notify(colour_notice(src, still.toned))
    rgb = colouriser.colourise_grey(still.luma)
    if compare:
        grey = np.repeat(still.luma[..., None], 3, axis=2)  # (H, W, 3): grey in sRGB is Y' itself
        rgb = np.concatenate([grey, rgb], axis=1)
        if still.alpha is not None:
            still = dataclasses.replace(still, alpha=np.concatenate([still.alpha] * 2, axis=1))
    try:
        with atomic_path(dst) as tmp:
            lost = write_still(tmp, IMAGE_FORMATS[dst.suffix.lower()], rgb, still, colouriser.tag)
    except (OSError, ValueError) as exc:  # Pillow's encoders raise ValueError for bad sizes
        raise write_error(dst, exc) from None
    if lost:
        notify(f"{dst} does not keep all of {src.name}: {'; '.join(lost)}")
    return rgb.shape[1], rgb.shape[0]
