"""What a batch will do: the files under SRC_DIR, each with its output under DST_DIR.

The list is a pure function of the tree, the patterns and the codec, sorted by relative path,
so every process of a sharded job (on any machine) computes the same one and takes its part.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from vidcolour.errors import UsageError, VidcolourError
from vidcolour.run import output_name
from vidcolour.stills import IMAGE_FORMATS
from vidcolour.video.keyframes import SIDECAR_SUFFIX

# What archives hold: the containers FFmpeg reads that carry film and tape transfers.
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mkv", ".mov", ".avi", ".mxf", ".mpg", ".mpeg", ".m2v", ".ts", ".m2ts"}
    | {".mts", ".vob", ".dv", ".webm", ".wmv", ".flv", ".ogv", ".3gp", ".y4m"}
)


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (1-based) of ``count`` equal parts of the file list."""

    index: int = 1
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match:
            raise UsageError(f"--shard takes K/N, e.g. 1/4, not '{text}'")
        index, count = int(match.group(1)), int(match.group(2))
        if not 1 <= index <= count:
            raise UsageError(f"--shard {text}: K must be from 1 to N")
        return cls(index, count)

    def holds(self, rel: str) -> bool:
        """Whether the file at relative path ``rel`` is in this shard: a stable hash of the
        path, so the split does not depend on the machine, the order or the other files."""
        digest = hashlib.sha256(rel.encode("utf-8", "surrogateescape")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class Item:
    """One input file and its output."""

    rel: str  # path under SRC_DIR, POSIX separators: the ledger's key
    src: Path
    dst: Path
    problem: str | None = None  # why it is skipped without being read


@dataclass
class BatchPlan:
    src_dir: Path
    dst_dir: Path
    items: list[Item]  # this shard's files, sorted by rel
    total: int  # matching files in all shards
    unmatched: int = 0  # files that match no pattern: not part of the job
    notes: list[str] = field(default_factory=list)  # what the walk did not enter, and why


def check_dirs(src_dir: Path, dst_dir: Path) -> tuple[Path, Path]:
    """Both directories resolved; an error if they overlap (outputs would land in SRC_DIR, or
    the walk would find its own outputs)."""
    if not src_dir.is_dir():
        raise VidcolourError(f"{src_dir} is not a directory")
    src = src_dir.resolve()
    if dst_dir.exists() and not dst_dir.is_dir():
        raise VidcolourError(f"{dst_dir} exists and is not a directory")
    dst = dst_dir.resolve()
    if dst == src:
        raise VidcolourError("the output directory is the source directory")
    if dst.is_relative_to(src):
        raise VidcolourError(f"the output directory {dst_dir} is inside the source {src_dir}")
    if src.is_relative_to(dst):
        raise VidcolourError(f"the source {src_dir} is inside the output directory {dst_dir}")
    return src, dst


def matches(rel: str, patterns: tuple[str, ...], stills: bool = False) -> bool:
    """Default: any video container's extension, and with ``stills`` any still image's that
    ``vidcolour run`` writes. Patterns are globs matched from the right of the relative path
    (``*.mkv``, ``reels/*.mov``), as ``PurePath.match`` does."""
    if not patterns:
        suffix = PurePosixPath(rel).suffix.lower()
        return suffix in VIDEO_EXTENSIONS or (stills and suffix in IMAGE_FORMATS)
    return any(PurePosixPath(rel).match(p) for p in patterns)


def check_patterns(patterns: tuple[str, ...]) -> None:
    """A usage error for a pattern ``PurePath.match`` refuses ('' or '.', empty as a path)."""
    for pattern in patterns:
        try:
            PurePosixPath("x").match(pattern)
        except ValueError as exc:
            raise UsageError(f"--pattern '{pattern}': {exc}; give a glob such as '*.mkv'") from None


def plan_batch(
    src_dir: Path,
    dst_dir: Path,
    patterns: tuple[str, ...],
    codec: str,
    shard: Shard,
    stills: bool = False,
) -> BatchPlan:
    check_patterns(patterns)
    src, dst = check_dirs(src_dir, dst_dir)
    plan = BatchPlan(src, dst, [], 0)

    def walk_error(exc: OSError) -> None:
        plan.notes.append(f"{readable(_rel(Path(exc.filename), src))}/: not read ({exc.strerror})")

    found: list[str] = []
    for root, dirs, files in os.walk(src, onerror=walk_error):
        here = Path(root)
        for name in sorted(dirs):
            if (here / name).is_symlink():  # os.walk does not descend into these
                plan.notes.append(
                    f"{readable(_rel(here / name, src))}/: a symlinked folder, not followed"
                )
        dirs[:] = sorted(d for d in dirs if not d.endswith(SIDECAR_SUFFIX))  # keyframes
        for name in files:
            rel = _rel(here / name, src)
            if matches(rel, patterns, stills):
                found.append(rel)
            else:
                plan.unmatched += 1
    found.sort()
    plan.total = len(found)
    writers: dict[Path, str] = {}
    for rel in found:
        path = src / rel
        out = dst / PurePosixPath(rel).parent / output_name(path, codec)
        problem = None
        if path.is_symlink() and not Path(os.path.realpath(path)).is_relative_to(src):
            problem = "a symlink to a file outside the source directory (not followed)"
        elif out in writers:
            problem = (
                f"its output {readable(_rel(out, dst))} is already that of {readable(writers[out])}"
            )
        else:
            writers[out] = rel
        if shard.holds(rel):
            plan.items.append(Item(rel, path, out, problem))
    return plan


def readable(text: str) -> str:
    """``text`` as it can be shown or written to a UTF-8 report: a name that is not valid
    UTF-8 (read with surrogate escapes) gets U+FFFD for each byte that is not."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()
