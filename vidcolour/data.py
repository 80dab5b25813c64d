"""Training images: find them, vet them, load them as fixed-size uint8 RGB tensors.

One bad file never stops a run. ``scan_images`` reads every header once (cheap: no decode)
and sorts files into usable, converted (CMYK, palette, alpha, 16-bit colour) and skipped
(not an image, greyscale, too small), each counted by reason. Damage that only shows when the
pixels are decoded (a truncated JPEG) is caught in the dataset, which then serves another
image, drawn from anywhere in the data set, instead, so batches keep their size and DDP ranks
stay in step. Only a data set mostly unreadable stops a run: ``MAX_TRIES`` draws for one
sample must all fail.

Lab conversion is not done here: workers hand uint8 RGB to the training loop, which converts
a whole batch on the training device (vidcolour.colour).
"""

from __future__ import annotations

import math
import os
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset, Sampler

from vidcolour.config import DataConfig
from vidcolour.errors import VidcolourError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}
GREYSCALE_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
COLOUR_MODES = {"RGB"}
GREY_TOLERANCE = 2  # an RGB image whose channels never differ by more is greyscale content
# Images tried for one sample before the run stops. Stand-ins are drawn from the whole data
# set, not the next files (a badly copied sub-folder sits together in sorted order), so all of
# them fail only when most of the data is unreadable: at half the files bad, 2**-32 a sample.
MAX_TRIES = 32

Image.MAX_IMAGE_PIXELS = 200_000_000  # archives have big scans; still stop decompression bombs


def list_images(source: str | Path) -> list[Path]:
    """Image paths from a folder (recursive, by suffix) or from a text file of paths.

    Paths in a list file are relative to the list file's folder unless absolute; blank lines
    and lines starting with '#' are ignored. The result is sorted and deduplicated.
    """
    source = Path(source)
    if source.is_dir():
        paths = _images_under(source)
    elif source.is_file():
        try:
            lines = source.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise VidcolourError(f"cannot read image list {source}: {exc}") from None
        entries = [line.strip() for line in lines]
        paths = [
            p if p.is_absolute() else source.parent / p
            for p in (Path(e) for e in entries if e and not e.startswith("#"))
        ]
    else:
        raise VidcolourError(f"no such image folder or list: {source}")
    return sorted(set(paths))


def _images_under(folder: Path) -> list[Path]:
    """The images in ``folder`` and below, into symlinked folders too (a data set is often
    put together from links), each folder and each picture once whatever the links: a link
    back up the tree is not a loop, a picture reached twice is not trained on twice."""
    seen_dirs: set[str] = set()
    seen_files: set[str] = set()
    paths = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen_dirs:
            dirs[:] = []
            continue
        seen_dirs.add(real)
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            target = os.path.realpath(path)
            if target not in seen_files:
                seen_files.add(target)
                paths.append(path)
    return paths


@dataclass
class ScanReport:
    """What ``scan_images`` found: usable paths and the counts per reason."""

    usable: list[Path] = field(default_factory=list)
    converted: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    first_skipped: dict[str, Path] = field(default_factory=dict)  # a file to look at, per reason

    def summary(self) -> str:
        parts = [f"{len(self.usable)} usable images"]
        if self.converted:
            parts.append(
                f"{sum(self.converted.values())} converted to RGB ("
                + ", ".join(f"{n} {why}" for why, n in sorted(self.converted.items()))
                + ")"
            )
        if self.skipped:
            parts.append(
                f"{sum(self.skipped.values())} skipped ("
                + ", ".join(
                    f"{n} {why}, first {self.first_skipped[why]}"
                    if why in self.first_skipped
                    else f"{n} {why}"
                    for why, n in sorted(self.skipped.items())
                )
                + ")"
            )
        return ", ".join(parts)

    def as_dict(self) -> dict[str, object]:
        return {
            "usable": len(self.usable),
            "converted": dict(self.converted),
            "skipped": dict(self.skipped),
        }


def _classify(path: Path, min_side: int) -> tuple[str, str | None]:
    """('use' | 'convert' | 'skip', reason) from the file's header alone."""
    try:
        with Image.open(path) as im:
            mode, size = im.mode, im.size
    except UnidentifiedImageError:
        return "skip", "not an image"
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return "skip", f"unreadable ({type(exc).__name__})"
    if min(size) < min_side:
        return "skip", f"smaller than {min_side} px"
    if mode in GREYSCALE_MODES:
        return "skip", "greyscale"
    if mode in COLOUR_MODES:
        return "use", None
    return "convert", mode


def scan_images(paths: Sequence[Path], min_side: int) -> ScanReport:
    report = ScanReport()
    for path in paths:
        verdict, reason = _classify(path, min_side)
        if verdict == "skip":
            report.skipped[reason or "?"] += 1
            report.first_skipped.setdefault(reason or "?", path)
            continue
        if verdict == "convert":
            report.converted[reason or "?"] += 1
        report.usable.append(path)
    return report


def load_rgb(path: Path) -> Image.Image:
    """Decode an image fully as 8-bit RGB (EXIF orientation applied). Raises on damage."""
    with Image.open(path) as f:
        im: Image.Image = ImageOps.exif_transpose(f)
        has_alpha = im.mode in ("RGBA", "PA") or (im.mode == "P" and "transparency" in im.info)
        if has_alpha:  # composite on white: transparent pixels have no meaningful colour
            im = im.convert("RGBA")
            background = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(background, im)
        return im.convert("RGB")


def fit_to_size(
    im: Image.Image, size: int, resize: str, rng: random.Random | None, hflip: bool
) -> Image.Image:
    """Resize to size x size.

    - ``stretch``: the whole image, its aspect ratio lost (the paper's protocol and ``vidcolour
      eval``'s).
    - ``crop``: the short side scaled to ``size``, then a square (random position when ``rng`` is
      given, centred otherwise): undistorted, as ``vidcolour run`` feeds the model.
    - ``mixed``: a region of full short side whose long side is drawn log-uniformly between the
      short side (an undistorted square) and the whole long side (the stretch), at a random
      position; so training sees every degree of squeeze between use and measurement. Without
      ``rng`` (validation) the stretch.
    """
    w, h = im.size
    if resize == "crop":
        scale = size / min(w, h)
        sw, sh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((sw, sh), Image.Resampling.BICUBIC, reducing_gap=2.0)
        x = rng.randint(0, sw - size) if rng else (sw - size) // 2
        y = rng.randint(0, sh - size) if rng else (sh - size) // 2
        im = im.crop((x, y, x + size, y + size))
    else:
        box = None  # the whole image
        if resize == "mixed" and rng is not None:
            short, long_ = min(w, h), max(w, h)
            span = round(short * math.exp(rng.uniform(0.0, math.log(long_ / short))))
            start = rng.randint(0, long_ - span)
            box = (start, 0, start + span, h) if w >= h else (0, start, w, start + span)
        im = im.resize((size, size), Image.Resampling.BICUBIC, box=box, reducing_gap=2.0)
    if hflip and rng is not None and rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return im


def is_grey(rgb: np.ndarray) -> bool:
    """True when an (H, W, 3) uint8 image carries no colour."""
    spread = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)
    return int(spread.max()) <= GREY_TOLERANCE


class ImageProblem(Exception):
    """An image that turned out unusable when decoded; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ImageDataset(Dataset):
    """Images as (3, size, size) uint8 RGB tensors, with the reasons for any file passed over.

    ``__getitem__`` returns ``(image, problems)``: if file i cannot be decoded or turns out to
    be greyscale, the next files are tried and each failure is listed in ``problems`` as
    ``(path, reason)``.
    """

    def __init__(
        self, paths: Sequence[Path], size: int, config: DataConfig, *, train: bool
    ) -> None:
        if not paths:
            raise VidcolourError("no usable images")
        self.paths = list(paths)
        self.size = size
        self.config = config
        self.train = train

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, path: Path) -> torch.Tensor:
        """One image as (3, size, size) uint8 RGB. Raises ImageProblem if it cannot be used."""
        # Seeded from torch's generator, which DataLoader seeds per worker from the run's seed.
        rng = random.Random(int(torch.randint(2**62, ()))) if self.train else None
        try:
            im = fit_to_size(
                load_rgb(path),
                self.size,
                self.config.resize,
                rng if self.config.random_crop else None,
                self.config.hflip and self.train,
            )
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise ImageProblem(f"cannot decode ({str(exc).splitlines()[0]})") from None
        rgb = np.asarray(im)
        if is_grey(rgb):
            raise ImageProblem("greyscale content")
        return torch.from_numpy(rgb.copy()).permute(2, 0, 1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, list[tuple[str, str]]]:
        problems: list[tuple[str, str]] = []
        # stand-ins from a stream of the index alone: the same ones on a resumed run, and the
        # run's own random streams untouched
        stand_ins = random.Random(int(index))
        path = self.paths[index]
        for _ in range(MAX_TRIES):
            try:
                return self.load(path), problems
            except ImageProblem as problem:
                problems.append((str(path), problem.reason))
            path = self.paths[stand_ins.randrange(len(self.paths))]
        raise VidcolourError(
            f"{MAX_TRIES} images drawn from across the data set could not be used "
            f"(last: {problems[-1][0]}, {problems[-1][1]}): most of it seems unreadable"
        )


def collate(
    samples: list[tuple[torch.Tensor, list[tuple[str, str]]]],
) -> tuple[torch.Tensor, list[tuple[str, str]]]:
    """Stack images to (B, 3, H, W) uint8 and gather every sample's problems."""
    images = torch.stack([image for image, _ in samples])
    problems = [p for _, sample_problems in samples for p in sample_problems]
    return images, problems


class SkipSampler(Sampler[int]):
    """Wraps a sampler and drops its first ``skip`` indices: resuming in the middle of an epoch
    continues with the same order and without repeating samples."""

    def __init__(self, base: Sampler[int], skip: int) -> None:
        self.base = base
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        for i, index in enumerate(self.base):
            if i >= self.skip:
                yield index

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)  # type: ignore[arg-type]


def imagenet_split(root: Path, per_class: int, seed: int) -> tuple[list[Path], list[Path]]:
    """The paper's ILSVRC2012 protocol (§IV-A) as two path lists.

    Training set: every image of the validation set (50,000: 50 per class), from ``root/val``.
    Test set: ``per_class`` images drawn at random, with ``seed``, from each class folder of
    ``root/train`` (10 per class: 10,000). Both lists are sorted.
    """
    val_dir, train_dir = root / "val", root / "train"
    for folder in (val_dir, train_dir):
        if not folder.is_dir():
            raise VidcolourError(
                f"{root} has no {folder.name}/ folder (expected ILSVRC2012 layout)"
            )
    train_list = list_images(val_dir)
    rng = random.Random(seed)
    test_list: list[Path] = []
    classes = sorted(p for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise VidcolourError(f"{train_dir} has no class folders")
    for folder in classes:
        images = list_images(folder)
        test_list.extend(rng.sample(images, min(per_class, len(images))))
    return train_list, sorted(test_list)
