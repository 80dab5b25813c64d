"""``vidcolour run`` for videos: decode -> colourise -> encode, overlapped.

Three stages joined by bounded queues, so memory stays flat whatever the length:
a decode thread (PyAV releases the GIL while decoding), a model thread (torch releases it
during its kernels) and the encoder on the calling thread, which also owns the output file and
so is the one place that handles interruption and cleanup.

    Source.chunks -> shots.mark_cuts --q--> Colouriser.video_chroma + Stabiliser --q--> Sink.write

The model sees every picture as it is displayed (upright, for a phone's rotated video) and
the stabiliser steadies it there; the chroma planes go back on the coded grid
(vidcolour/video/orientation.py).

With stabilisation (the default) the decode thread also finds the cuts, holding chunks back
for a look-ahead of three frames, and the model thread steadies each batch's predicted colour
along the motion before it becomes chroma (docs/VIDEO.md).
"""

from __future__ import annotations

import errno
import itertools
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np
import torch

from vidcolour.errors import DiskFullError, VidcolourError
from vidcolour.fsutil import atomic_path
from vidcolour.progress import plural
from vidcolour.tint import colour_notice
from vidcolour.video.checks import TemporalChecks
from vidcolour.video.keyframes import (
    REACH,
    KeyframeGuide,
    Keyframes,
    check_keyframes,
    count_frames,
)
from vidcolour.video.orientation import IDENTITY, Orientation, display_matrix, orientation_of
from vidcolour.video.planes import chroma_spread, is_toned
from vidcolour.video.shots import mark_cuts
from vidcolour.video.sink import (
    CODECS,
    Plan,
    Sink,
    check_encoder_options,
    container_for,
    default_codec,
    plan_output,
)
from vidcolour.video.source import Chunk, DecodeStats, Source, Stretch
from vidcolour.video.stabilise import DEFAULT_STRENGTH, Stabiliser

if TYPE_CHECKING:
    from vidcolour.colouriser import Colouriser, Smoother

COLOUR_SPREAD = 2.0  # mean |C - neutral| in 8-bit codes above which the input counts as colour
_NO_DISPLAY_MATRIX = {"avi"}  # containers whose muxer drops the display matrix
_END = object()
_POLL_S = 0.1


@dataclass(frozen=True)
class VideoOptions:
    codec: str | None = None  # None: the output container's default (sink.default_codec)
    crf: int | None = None
    preset: str | None = None
    tune: str | None = None  # x264/x265 tune; None: the codec's default, "none": no tune
    batch_size: int = 8
    overwrite: bool = False
    queue_chunks: int = 2  # chunks buffered between stages
    stabilise: bool = True  # motion-aware chroma stabilisation within shots
    strength: float = DEFAULT_STRENGTH  # in [0, 1): weight of the colour carried along motion
    keyframes: Mapping[int, Path] | None = None  # painted frames: frame number -> image file
    keyframe_reach: int = REACH  # frames colour is carried back from a keyframe
    compare: bool = False  # write the input and the colour side by side, for review
    start: float = 0.0  # seconds: colourise a stretch of the film (a preview) from here
    duration: float | None = None  # seconds of it; None: to the end


@dataclass
class VideoReport:
    src: Path
    dst: Path
    frames: int = 0
    expected_frames: int | None = None
    seconds: float = 0.0
    stats: DecodeStats = field(default_factory=DecodeStats)
    notices: list[str] = field(default_factory=list)
    read_error: str | None = None
    cuts: list[int] | None = None  # frames that start a shot, when stabilised

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        damage = []
        if self.stats.bad_packets:
            damage.append(f"{self.stats.bad_packets} undecodable packets")
        if self.stats.corrupt_frames:
            damage.append(f"{self.stats.corrupt_frames} damaged frames kept")
        if self.read_error:
            damage.append(f"reading stopped early: {self.read_error}")
        tail = f"; {', '.join(damage)}" if damage else ""
        shots = (
            f", {plural(len(self.cuts) + 1, 'shot')}"
            if self.cuts is not None and self.frames
            else ""
        )
        return (
            f"{self.dst}: {plural(self.frames, 'frame')}{shots} in {self.seconds:.1f} s "
            f"({self.fps:.1f} fps){tail}"
        )


Progress = Callable[[int, int | None], None]  # (frames done, frames expected or None)


def check_destination(src: Path, dst: Path, overwrite: bool) -> None:
    """Refuse outputs that would destroy the input, clobber a file or cannot be written."""
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise VidcolourError(f"output {dst} is the input; choose another name")
    if dst.is_dir():
        raise VidcolourError(f"output {dst} is a directory")
    if dst.exists() and not overwrite:
        raise VidcolourError(f"{dst} exists (use --overwrite to replace it)")
    parent = dst.parent
    if not parent.is_dir():
        raise VidcolourError(f"output directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise VidcolourError(f"output directory {parent} is not writable")


def colourise_video(
    colouriser: Colouriser,
    src: Path,
    dst: Path,
    options: VideoOptions,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
    checks: TemporalChecks | None = None,
) -> VideoReport:
    """Write a colourised copy of the video ``src`` to ``dst`` (whole, or not at all).

    ``progress`` is called after every batch written (an exception it raises cancels the job
    cleanly); ``checks``, when given, sees every output frame.
    """
    name = options.codec or default_codec(dst)
    if name not in CODECS:
        raise VidcolourError(f"unknown codec '{name}' (choose from {', '.join(CODECS)})")
    codec = CODECS[name]
    if not 0.0 <= options.strength < 1.0:
        raise VidcolourError(f"stabilisation strength must be in [0, 1), got {options.strength}")
    check_encoder_options(name, options.crf, options.preset, options.tune)
    container_format = container_for(dst, name)
    check_destination(src, dst, options.overwrite)
    report = VideoReport(src, dst)

    def tell(message: str) -> None:
        report.notices.append(message)
        if notify is not None:
            notify(message)

    start = time.perf_counter()
    stretch = None
    if options.start or options.duration is not None:
        if options.start < 0 or (options.duration is not None and options.duration <= 0):
            raise VidcolourError("a stretch needs start >= 0 and duration > 0")
        stretch = Stretch(options.start, options.duration)
    with Source(src, stretch) as source:
        report.expected_frames = source.expected_frames
        chunks = source.chunks(options.batch_size)
        first_chunk = _first_frames(chunks, src)
        first = first_chunk.frames[0]
        plan = plan_output(first, codec, source.stream.codec_context.field_order)
        if chroma_spread(first, plan.source) > COLOUR_SPREAD:
            tell(colour_notice(src, is_toned(first, plan.source)))
        if plan.fields:
            tell(f"{src} is interlaced ({source.field_order}); colourising each field on its own")
        orientation = _orientation(first, src, container_format, tell)
        keyframes = None
        if options.keyframes:
            if plan.fields:
                raise VidcolourError(f"{src} is interlaced: keyframes work on progressive video")
            displayed = orientation.turned((first.height, first.width))
            keyframes = check_keyframes(options.keyframes, displayed, count_frames(src), tell)
        try:
            with atomic_path(dst) as tmp:
                sink = Sink(
                    tmp,
                    container_format,
                    source,
                    first,
                    plan,
                    codec,
                    crf=options.crf,
                    preset=options.preset,
                    tune=options.tune,
                    tag=colouriser.tag,
                    notify=tell,
                    compare=options.compare,
                )
                try:
                    _run_stages(
                        colouriser,
                        plan,
                        first_chunk,
                        chunks,
                        sink,
                        options,
                        orientation,
                        report,
                        progress,
                        checks,
                        keyframes,
                    )
                    sink.close()
                except BaseException:
                    sink.abort()
                    raise
        except (av.FFmpegError, OSError) as exc:
            raise write_error(dst, exc) from None
        report.stats = source.stats
        report.read_error = source.read_error
    report.seconds = time.perf_counter() - start
    return report


def _orientation(
    first: av.VideoFrame, src: Path, container_format: str, tell: Callable[[str], None]
) -> Orientation:
    """How the model must turn the pictures to see them as displayed."""
    matrix = display_matrix(first)
    orientation = orientation_of(matrix)
    if orientation is None:
        tell(
            f"{src} is displayed rotated by {first.rotation} degrees, not a multiple of 90; "
            "colourising the picture as coded"
        )
        orientation = Orientation()
    if matrix not in (None, IDENTITY) and container_format in _NO_DISPLAY_MATRIX:
        tell(
            f"{src} has a display rotation or mirroring that {container_format} cannot hold; "
            "the output plays as coded (use .mp4, .mov or .mkv to keep it)"
        )
    return orientation


def _first_frames(chunks: Iterator[Chunk], src: Path) -> Chunk:
    """The first chunk with frames (packets before it are kept with it)."""
    packets: list[av.Packet] = []
    for chunk in chunks:
        if chunk.frames:
            chunk.packets[:0] = packets
            return chunk
        packets += chunk.packets
    raise VidcolourError(f"{src}: no video frame could be decoded")


def _run_stages(
    colouriser: Colouriser,
    plan: Plan,
    first_chunk: Chunk,
    chunks: Iterator[Chunk],
    sink: Sink,
    options: VideoOptions,
    orientation: Orientation,
    report: VideoReport,
    progress: Progress | None,
    checks: TemporalChecks | None,
    keyframes: Keyframes | None = None,
) -> None:
    stop = threading.Event()
    stream: Iterable[Chunk] = itertools.chain([first_chunk], chunks)
    stabilisers: list[Stabiliser] = []
    if options.stabilise or keyframes is not None:
        stream = mark_cuts(stream, plan.source.bits)
        report.cuts = []
    if options.stabilise:
        stabilisers = [Stabiliser(options.strength) for _ in range(2 if plan.fields else 1)]
    decoded: queue.Queue[Any] = queue.Queue(maxsize=options.queue_chunks)
    coloured: queue.Queue[Any] = queue.Queue(maxsize=options.queue_chunks)
    failures: list[BaseException] = []

    def put(q: queue.Queue[Any], item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def get(q: queue.Queue[Any]) -> Any:
        while True:
            if failures:
                raise failures[0]
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                if stop.is_set():
                    raise RuntimeError("pipeline stopped") from None  # failures says why
                continue

    def decode() -> None:
        try:
            for chunk in stream:
                if not put(decoded, chunk):
                    return
            put(decoded, _END)
        except BaseException as exc:
            failures.append(exc)
            stop.set()

    def colourise() -> None:
        try:
            if keyframes is not None:
                guided = _guided(colouriser, plan, orientation, stabilisers, keyframes, options)
                for item in guided(lambda: get(decoded)):
                    if not put(coloured, item):
                        return
                return
            while True:
                chunk = get(decoded)
                if chunk is _END:
                    put(coloured, _END)
                    return
                codes = None
                if chunk.frames:
                    codes = colouriser.video_chroma(
                        chunk.luma,
                        plan.source_coding,
                        plan.target_coding,
                        plan.target.chroma_size,
                        plan.fields,
                        _smoother(stabilisers, chunk.cuts) if stabilisers else None,
                        orientation,
                    )
                if not put(coloured, (chunk, codes)):
                    return
        except BaseException as exc:
            failures.append(exc)
            stop.set()

    workers = [
        threading.Thread(target=decode, name="vidcolour-decode", daemon=True),
        threading.Thread(target=colourise, name="vidcolour-model", daemon=True),
    ]
    for worker in workers:
        worker.start()
    try:
        while True:
            item = get(coloured)
            if item is _END:
                break
            chunk, codes = item
            for packet in chunk.packets:
                sink.carry(packet)
            for i, frame in enumerate(chunk.frames):
                sink.write(frame, chunk.luma[i], codes[0][i], codes[1][i])
            if report.cuts is not None:
                report.cuts += [report.frames + i for i, cut in enumerate(chunk.cuts) if cut]
            report.frames += len(chunk.frames)
            if checks is not None and chunk.frames:
                checks.add_codes(
                    chunk.luma, codes[0], codes[1], plan.target_coding, plan.source.bits
                )
            if progress is not None:
                progress(report.frames, report.expected_frames)
    finally:
        stop.set()
        for worker in workers:
            worker.join()


def _guided(
    colouriser: Colouriser,
    plan: Plan,
    orientation: Orientation,
    stabilisers: list[Stabiliser],
    keyframes: Keyframes,
    options: VideoOptions,
) -> Callable[[Callable[[], Any]], Iterator[Any]]:
    """The model stage with keyframes: each chunk's automatic (stabilised) ab goes through the
    keyframe guide, and a chunk moves on once all its frames' colour is known, so chunks wait
    here for a keyframe ahead (at most ``keyframe_reach`` frames' worth)."""
    guide = KeyframeGuide(keyframes, options.keyframe_reach)

    def stage(next_chunk: Callable[[], Any]) -> Iterator[Any]:
        waiting: list[tuple[Chunk, int, list[np.ndarray | None]]] = []  # chunk, first frame, ab
        frames = 0  # display index of the next chunk's first frame
        while True:
            chunk = next_chunk()
            if chunk is _END:
                resolved = guide.flush()
            else:
                waiting.append((chunk, frames, [None] * len(chunk.frames)))
                resolved = []
            if chunk is not _END and chunk.frames:
                y_work, ab = colouriser.video_ab(chunk.luma, plan.source_coding, orientation)
                if stabilisers:
                    ab = stabilisers[0].run(ab, y_work, chunk.cuts)
                lumas = (y_work[:, 0] * 255).round().clamp(0, 255).byte().cpu().numpy()
                autos = ab.float().cpu().numpy()
                for i in range(len(chunk.frames)):
                    resolved += guide.push(frames + i, chunk.cuts[i], lumas[i], autos[i])
                frames += len(chunk.frames)
            for index, ab_frame in resolved:
                _, first, slots = next(w for w in waiting if w[1] + len(w[2]) > index)
                slots[index - first] = ab_frame
            while waiting and all(s is not None for s in waiting[0][2]):
                done, _, slots = waiting.pop(0)
                codes = None
                if slots:
                    ab = torch.from_numpy(np.stack(slots))  # type: ignore[arg-type]
                    codes = colouriser.chroma_from_ab(
                        done.luma, ab, plan.source_coding, plan.target_coding,
                        plan.target.chroma_size, orientation,
                    )  # fmt: skip
                yield done, codes
            if chunk is _END:
                if guide.missed:
                    raise VidcolourError(
                        f"keyframe for frame {guide.missed[0]} is past the film's end "
                        f"(frames 0-{frames - 1}); nothing written"
                    )
                yield _END
                return

    return stage


def _smoother(stabilisers: list[Stabiliser], cuts: list[bool]) -> Smoother:
    """Stabilisation of one chunk's ab: one stabiliser per stream of pictures (two for
    interlaced video, whose batches hold all top fields, then all bottom ones)."""

    def smooth(ab: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        parts = zip(stabilisers, ab.chunk(len(stabilisers)), y.chunk(len(stabilisers)), strict=True)
        return torch.cat([stabiliser.run(a, luma, cuts) for stabiliser, a, luma in parts])

    return smooth


def write_error(dst: Path, exc: BaseException) -> VidcolourError:
    """The user-facing error for an output that could not be written."""
    code = getattr(exc, "errno", None)
    reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
    if code in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"cannot write {dst}: the disk is full")
    if code == errno.EFBIG:
        reason = "file size limit reached"
    return VidcolourError(f"cannot write {dst}: {reason}")
