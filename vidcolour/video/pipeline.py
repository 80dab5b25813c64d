"""``vidcolour run`` for videos: decode -> colourise -> encode, overlapped.

Stages joined by bounded queues, so memory stays flat whatever the length: a decode thread
(PyAV releases the GIL while decoding), model workers (torch releases it during its kernels;
on a CPU two, each predicting every other chunk on half the intra-op threads:
devices.model_workers), a colour thread that takes their chunks back in order, and the encoder
on the calling thread, which also owns the output file and so is the one place that handles
interruption and cleanup.

    Source.chunks -> segments.segment_chunks --q--> ColourStage.predict (chunk k: worker k % n)
        --q--> StabiliseStage -> ColourStage.chroma --q--> SegmentWriter

A film is written in segments (video/segments.py): each a file of its own in a work folder,
kept once finished with the state the next starts from, then joined into the output by copying
packets; a rerun with ``resume`` goes on from the last finished one. AVI output (no timestamps)
and a stretch (--start) are written in one piece: shots.mark_cuts, then Sink.write.

The colour comes from any ``ColourSource`` (``Colouriser`` is one). The model sees every
picture as it is displayed (upright, for a phone's rotated video) and the stabiliser steadies
it there; the chroma planes go back on the coded grid (vidcolour/video/orientation.py).

With stabilisation (the default) the decode thread also finds the cuts, holding chunks back
for a look-ahead of three frames, and the colour thread steadies each batch's predicted colour
along the motion before it becomes chroma (docs/VIDEO.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
import torch

from vidcolour.defaults import KEYFRAME_REACH, SEGMENT_SECONDS, STABILISE_STRENGTH
from vidcolour.devices import model_workers, use_threads
from vidcolour.errors import VidcolourError
from vidcolour.fsutil import atomic_path, check_destination, remove_temps, write_error
from vidcolour.progress import plural
from vidcolour.tint import colour_notice
from vidcolour.video.checks import TemporalChecks
from vidcolour.video.codecs import (
    CODECS,
    Codec,
    check_encoder_options,
    container_for,
    default_codec,
)
from vidcolour.video.colourise import AbPredictor, ColourStage, WorkingColour
from vidcolour.video.keyframes import (
    KeyframeGuide,
    Keyframes,
    check_keyframes,
    count_frames,
    keyframes_digest,
)
from vidcolour.video.orientation import IDENTITY, Orientation, display_matrix, orientation_of
from vidcolour.video.planes import chroma_spread, is_toned
from vidcolour.video.segments import (
    CAP_FACTOR,
    SegmentWriter,
    WorkFolder,
    fingerprint,
    fresh_detector,
    join,
    segment_chunks,
    work_path,
)
from vidcolour.video.shots import mark_cuts
from vidcolour.video.sink import Plan, Sink, plan_output
from vidcolour.video.source import Chunk, DecodeStats, Source, Stretch
from vidcolour.video.stabilise import StabiliseStage, flow_luma

COLOUR_SPREAD = 2.0  # mean |C - neutral| in 8-bit codes above which the input counts as colour
_NO_DISPLAY_MATRIX = {"avi"}  # containers whose muxer drops the display matrix
_END = object()
STAGES = ("decode", "predict", "stabilise", "chroma", "encode")
_POLL_S = 0.1
_GUESSED_RATE = 25.0  # frames per second, where the input does not say


class ColourSource(AbPredictor, Protocol):
    """What colours a video: a predictor of ab that can say what it is."""

    @property
    def tag(self) -> str:
        """What the output's metadata says made it."""
        ...

    @property
    def identity(self) -> str:
        """The tag and every setting that changes the colour: a film's segments made with
        another identity are not resumed (video/segments.py)."""
        ...

    @property
    def compiled(self) -> bool:
        """Whether it runs under ``torch.compile``: the colour stage's own maths then do too."""
        ...


@dataclass(frozen=True)
class VideoOptions:
    codec: str | None = None  # None: the output container's default (sink.default_codec)
    crf: int | None = None
    preset: str | None = None
    tune: str | None = None  # x264/x265 tune; None: the codec's default, "none": no tune
    batch_size: int = 8
    overwrite: bool = False
    queue_chunks: int = 2  # chunks buffered between stages
    model_workers: int = 0  # threads running the generator side by side; 0: auto (devices)
    stabilise: bool = True  # motion-aware chroma stabilisation within shots
    strength: float = STABILISE_STRENGTH  # in [0, 1): weight of the colour carried along motion
    keyframes: Mapping[int, Path] | None = None  # painted frames: frame number -> image file
    keyframe_reach: int = KEYFRAME_REACH  # frames colour is carried back from a keyframe
    compare: bool = False  # write the input and the colour side by side, for review
    start: float = 0.0  # seconds: colourise a stretch of the film (a preview) from here
    duration: float | None = None  # seconds of it; None: to the end
    # Seconds of film per segment (video/segments.py); None or 0: one piece. A film is made in
    # one piece anyway as a stretch (start, duration) or as AVI, which has no timestamps.
    segment_seconds: float | None = SEGMENT_SECONDS
    resume: bool = False  # go on from an earlier run's finished segments


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
    cut_short: str | None = None  # Source.cut_short: the picture ends early
    cuts: list[int] | None = None  # frames that start a shot, when stabilised
    # Seconds each stage was busy in the overlapped run (STAGES; each thread times its own,
    # "predict" summed over the model workers): their shares of ``seconds`` show where the time
    # went (`vidcolour bench`). With keyframes stabilise and chroma are not timed and stay 0.
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    resumed_frames: int = 0  # of ``frames``: taken from an earlier run's finished segments

    @property
    def fps(self) -> float:
        """Frames colourised per second by this run."""
        done = self.frames - self.resumed_frames
        return done / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        damage = []
        if self.stats.bad_packets:
            damage.append(f"{self.stats.bad_packets} undecodable packets")
        if self.stats.corrupt_frames:
            damage.append(f"{self.stats.corrupt_frames} damaged frames kept")
        if self.read_error:
            damage.append(f"reading stopped early: {self.read_error}")
        if self.cut_short:
            damage.append(f"short: {self.cut_short}; the file may be cut short")
        tail = f"; {', '.join(damage)}" if damage else ""
        shots = (
            f", {plural(len(self.cuts) + 1, 'shot')}"
            if self.cuts is not None and self.frames
            else ""
        )
        resumed = f", {self.resumed_frames} from earlier segments" if self.resumed_frames else ""
        return (
            f"{self.dst}: {plural(self.frames, 'frame')}{shots} in {self.seconds:.1f} s "
            f"({self.fps:.1f} fps{resumed}){tail}"
        )


Progress = Callable[[int, int | None], None]  # (frames done, frames expected or None)


def colourise_video(
    colouriser: ColourSource,
    src: Path,
    dst: Path,
    options: VideoOptions,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
    checks: TemporalChecks | None = None,
    on_segment: Callable[[int, int], None] | None = None,
    keep_work: bool = False,
) -> VideoReport:
    """Write a colourised copy of the video ``src`` to ``dst`` (whole, or not at all).

    ``progress`` is called before the first frame, after every batch and during a join of
    segments (an exception it raises cancels the job cleanly); ``checks``, when given, sees
    every output frame. A film made in segments calls ``on_segment(finished segments, frames
    in them)`` after each, and on resuming; ``keep_work`` leaves the finished segments' work
    folder for the caller to remove (``segments.work_path``) once the output is recorded.
    """
    codec, container_format = _check_options(options, dst)
    check_destination(src, dst, options.overwrite)
    in_segments = _in_segments(options, container_format)
    report = VideoReport(src, dst)

    def tell(message: str) -> None:
        report.notices.append(message)
        if notify is not None:
            notify(message)

    start = time.perf_counter()
    with Source(src, _stretch(options)) as source:
        report.expected_frames = source.expected_frames
        chunks = source.chunks(options.batch_size)
        first_chunk = _first_frames(chunks, src, source.stretch)
        first = first_chunk.frames[0]
        plan = plan_output(first, codec, source.stream.codec_context.field_order)
        if chroma_spread(first, plan.source) > COLOUR_SPREAD:
            tell(colour_notice(src, is_toned(first, plan.source)))
        if plan.fields:
            tell(f"{src} is interlaced ({source.field_order}); colourising each field on its own")
        orientation = _orientation(first, src, container_format, tell)
        keyframes = _keyframes(options, src, plan, orientation, first, tell)
        job = _Job(colouriser, plan, options, orientation, report, progress, checks, keyframes)

        def open_sink(path: Path, **kwargs: Any) -> Sink:
            return Sink(
                path,
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
                **kwargs,
            )

        stream = itertools.chain([first_chunk], chunks)
        try:
            if in_segments:
                _colourise_in_segments(job, source, stream, open_sink, on_segment, keep_work, tell)
            else:
                _earlier_segments_go(dst, options, tell)
                with atomic_path(dst) as tmp:
                    sink = open_sink(tmp)
                    try:
                        _run_stages(job, _marked(job, stream), sink)
                        sink.close()
                    except BaseException:
                        sink.abort()
                        raise
                report.stats, report.read_error, report.cut_short = source.outcome()
        except (av.FFmpegError, OSError) as exc:
            raise write_error(dst, exc) from None
    report.seconds = time.perf_counter() - start
    return report


@dataclass(frozen=True)
class _Job:
    """What every stage of one film's colourising shares."""

    colouriser: ColourSource
    plan: Plan
    options: VideoOptions
    orientation: Orientation
    report: VideoReport
    progress: Progress | None
    checks: TemporalChecks | None
    keyframes: Keyframes | None

    def still_going(self) -> None:
        """Give ``progress`` its chance to stop the job where no frame is being made."""
        if self.progress is not None:
            self.progress(self.report.frames, self.report.expected_frames)


def _colourise_in_segments(
    job: _Job,
    source: Source,
    stream: Iterator[Chunk],
    open_sink: Callable[..., Sink],
    on_segment: Callable[[int, int], None] | None,
    keep_work: bool,
    tell: Callable[[str], None],
) -> None:
    """The film in segments, then joined into ``job.report.dst``: the output's temp file is
    taken first, so an output that cannot be written fails before any work."""
    options, dst = job.options, job.report.dst
    if options.resume or work_path(dst).is_dir():
        remove_temps(dst)  # of a killed run: whoever takes up its work owns the output
    with atomic_path(dst) as tmp:
        work = WorkFolder(dst, _work_key(job.colouriser, source.path, options), dst.suffix)
        work.open(options.resume, options.overwrite, tell)
        try:
            _in_pieces(job, work, source, stream, open_sink, on_segment)
        except BaseException:
            if not work.segments:
                work.remove()  # nothing finished: nothing to resume from
            else:
                tell(
                    f"{plural(len(work.segments), 'finished segment')} kept in {work.path}: "
                    "run again with --resume to go on from there"
                )
            raise
        with Source(source.path) as whole:
            join(work, lambda template: open_sink(tmp, template=template), whole, job.still_going)
        work.record_joined(tmp)  # a run stopped after the rename knows the output as its own
    if not keep_work:
        work.remove()


def joined_earlier(colouriser: ColourSource, src: Path, dst: Path, options: VideoOptions) -> bool:
    """Whether ``dst`` is the output an earlier run with these settings joined from its
    segments and renamed into place, the run stopped (SIGKILL, SIGTERM) before it removed
    its work folder: the folder's manifest records it (``WorkFolder.record_joined``)."""
    if not (dst.is_file() and work_path(dst).is_dir()):
        return False
    return WorkFolder(dst, _work_key(colouriser, src, options), dst.suffix).joined_into(dst)


def _earlier_segments_go(dst: Path, options: VideoOptions, tell: Callable[[str], None]) -> None:
    """Before ``dst`` is written in one piece (a preview, AVI, ``--segment-seconds 0``): the
    segments an earlier, killed run of ``dst`` left are refused, as a segmented rerun refuses
    them, even under --resume (hours of work this run cannot use); --overwrite discards them
    with a notice, so that nothing stale stays beside the output."""
    work = work_path(dst)
    if not work.is_dir():
        return
    if not options.overwrite:
        raise VidcolourError(
            f"{work} holds an earlier run's segments, which this run (in one piece) cannot use: "
            "add --overwrite to discard them"
        )
    remove_temps(dst)
    shutil.rmtree(work)
    tell(f"{work}: an earlier run's segments discarded (this run writes {dst.name} in one piece)")


def _in_segments(options: VideoOptions, container_format: str) -> bool:
    """Whether the film is made in segments (``VideoOptions.segment_seconds``)."""
    wanted = bool(options.segment_seconds and options.segment_seconds > 0)
    whole = container_format == "avi" or _stretch(options) is not None
    if options.resume and not wanted:
        raise VidcolourError("--resume goes on from segments: not with --segment-seconds 0")
    if options.segment_seconds is not None and options.segment_seconds < 0:
        raise VidcolourError(f"--segment-seconds must be >= 0, got {options.segment_seconds:g}")
    return wanted and not whole


# The revision of what the pipeline computes: bump it with any change that alters the frames
# written for the same input, model and options (colour maths, stabilisation, resizing), so that
# a film resumed across that change starts again instead of joining segments made two ways.
# 1: Lab -> Cb/Cr without selects (codes within 1 of before) and the stabiliser's DIS flow at
# its ultrafast preset (issue 22); work folders from before it have no revision.
# 2: L from luma in one power (within 1e-5), the shot signature from 2x2 means first.
# 3: the generator's instance norm in place and its head without the concatenation (on the
# example clip 6 codes of 26.1 million moved, by 1), after fractional powers as log2 and exp2.
# 4: the working size's longer side at most 4 times --resolution (pictures wider than 4:1).
OUTPUT_REVISION = 4


def _work_key(colouriser: ColourSource, src: Path, options: VideoOptions) -> str:
    """What a film's segments depend on: the input, the model, every option that shapes the
    output (the keyframes by content) and ``OUTPUT_REVISION``."""
    shaping = dataclasses.asdict(options)
    for name in ("overwrite", "queue_chunks", "model_workers", "resume", "keyframes"):
        del shaping[name]
    if options.keyframes:
        shaping["keyframes"] = keyframes_digest({n: Path(p) for n, p in options.keyframes.items()})
    return json.dumps(
        {
            "input": fingerprint(src),
            "model": colouriser.identity,
            "options": shaping,
            "revision": OUTPUT_REVISION,
        },
        sort_keys=True,
    )


def _restored(job: _Job, work: WorkFolder, on_segment: Callable[[int, int], None] | None) -> None:
    """The report as the finished segments of ``work`` leave it."""
    report = job.report
    report.frames = report.resumed_frames = work.next_frame
    if job.options.stabilise or job.keyframes is not None:  # as in one piece: cuts used, told
        report.cuts = [c for segment in work.segments for c in segment.cuts]
    report.stats.bad_packets = sum(s.bad_packets for s in work.segments)
    report.stats.corrupt_frames = sum(s.corrupt_frames for s in work.segments)
    if on_segment is not None and work.segments:
        on_segment(len(work.segments), work.next_frame)


def _in_pieces(
    job: _Job,
    work: WorkFolder,
    probe: Source,
    fresh: Iterator[Chunk],
    open_sink: Callable[..., Sink],
    on_segment: Callable[[int, int], None] | None,
) -> None:
    """Colourise what the finished segments of ``work`` do not hold yet, segment by segment.
    ``probe``: the input, opened; ``fresh``: its chunks from the start."""
    _restored(job, work, on_segment)
    if work.complete:
        return
    with contextlib.ExitStack() as stack:
        source = probe
        if work.segments:  # on from where the last finished segment stopped
            source = stack.enter_context(Source(probe.path))
            source.resume_at(work.next_frame, work.next_pts)
            fresh = source.chunks(job.options.batch_size)
        state = work.state()
        if job.checks is not None and "checks_frames" in state:
            job.checks.restore(state)
        target = job.options.segment_seconds or SEGMENT_SECONDS
        cap = None if job.keyframes is not None else CAP_FACTOR * target  # see _guided
        bits, batch = job.plan.source.bits, job.options.batch_size
        rate = float(probe.rate or _GUESSED_RATE)  # for frames without timestamps
        stream = segment_chunks(fresh, bits, batch, target, cap, fresh_detector(state), rate)
        writer = SegmentWriter(
            work,
            lambda path: open_sink(path, video_only=True),
            lambda: source.stats,
            job.checks,
            on_segment,
        )
        try:
            _run_stages(job, stream, writer, state)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        report = job.report
        report.stats.bad_packets += source.stats.bad_packets
        report.stats.corrupt_frames += source.stats.corrupt_frames
        report.read_error = source.read_error
        report.cut_short = source.cut_short()


def _check_options(options: VideoOptions, dst: Path) -> tuple[Codec, str]:
    """The codec and the container format of the output ``dst``, or an error saying why not."""
    name = options.codec or default_codec(dst)
    if name not in CODECS:
        raise VidcolourError(f"unknown codec '{name}' (choose from {', '.join(CODECS)})")
    codec = CODECS[name]
    if not 0.0 <= options.strength < 1.0:
        raise VidcolourError(f"stabilisation strength must be in [0, 1), got {options.strength}")
    check_encoder_options(name, options.crf, options.preset, options.tune)
    return codec, container_for(dst, name)


def _stretch(options: VideoOptions) -> Stretch | None:
    """The part of the film ``options`` ask for (--start, --duration); None: all of it."""
    if not options.start and options.duration is None:
        return None
    if options.start < 0 or (options.duration is not None and options.duration <= 0):
        raise VidcolourError("a stretch needs start >= 0 and duration > 0")
    return Stretch(options.start, options.duration)


def _keyframes(
    options: VideoOptions,
    src: Path,
    plan: Plan,
    orientation: Orientation,
    first: av.VideoFrame,
    tell: Callable[[str], None],
) -> Keyframes | None:
    """The checked keyframes of ``options``, if any: refused before any frame is written."""
    if not options.keyframes:
        return None
    if plan.fields:
        raise VidcolourError(f"{src} is interlaced: keyframes work on progressive video")
    displayed = orientation.turned((first.height, first.width))
    return check_keyframes(options.keyframes, displayed, count_frames(src), tell)


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


def _first_frames(chunks: Iterator[Chunk], src: Path, stretch: Stretch | None) -> Chunk:
    """The first chunk with frames (packets before it are kept with it)."""
    packets: list[av.Packet] = []
    for chunk in chunks:
        if chunk.frames:
            chunk.packets[:0] = packets
            return chunk
        packets += chunk.packets
    if stretch is not None:  # frames that decode, none of them in the stretch
        raise VidcolourError(f"{src}: no frame lies in the stretch asked for (--start/--duration)")
    raise VidcolourError(f"{src}: no video frame could be decoded")


def _marked(job: _Job, stream: Iterable[Chunk]) -> Iterable[Chunk]:
    """The chunks of a film made in one piece, with their cuts found where they are used."""
    if not job.options.stabilise and job.keyframes is None:
        return stream
    job.report.cuts = []
    return mark_cuts(stream, job.plan.source.bits)


def _run_stages(
    job: _Job,
    stream: Iterable[Chunk],
    sink: Sink | SegmentWriter,
    carried: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Colourise ``stream`` (from film frame ``job.report.frames`` on) into ``sink``.
    ``carried``: the stabiliser's state to start from (a resumed film's)."""
    # One piece: the decode, model and colour threads and the encoding loop share the stop
    # event, the failure list and the queues through put/get; apart, each would take them all.
    options, plan, report, keyframes = job.options, job.plan, job.report, job.keyframes
    progress, checks = job.progress, job.checks
    stop = threading.Event()
    colour = ColourStage(
        job.colouriser,
        plan.source_coding,
        plan.target_coding,
        plan.target.chroma_size,
        plan.fields,
        job.orientation,
    )
    stabilise = None
    if options.stabilise:
        stabilise = StabiliseStage(colour.streams, options.strength)
        stabilise.restore(carried or {})
    device = job.colouriser.device
    n_workers = model_workers(device, options.model_workers, job.colouriser.compiled)
    threads = max(1, torch.get_num_threads() // n_workers)
    # Chunk k goes to model worker k % n and comes back from it, so order needs no sorting.
    # In flight at most: 1 decoding, queue_chunks (at least 1 a worker) queued, 1 per worker
    # predicting and 1 done, 1 stabilising, queue_chunks to encode, 1 encoding: 11 with two
    # workers where the single model thread held 7 (docs/VIDEO.md).
    decoded: list[queue.Queue[Any]] = [
        queue.Queue(maxsize=max(1, options.queue_chunks // n_workers)) for _ in range(n_workers)
    ]
    predicted: list[queue.Queue[Any]] = [queue.Queue(maxsize=1) for _ in range(n_workers)]
    coloured: queue.Queue[Any] = queue.Queue(maxsize=options.queue_chunks)
    failures: list[BaseException] = []
    timing = threading.Lock()

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
                # stop first: a worker that fails records why before it sets stop, so once
                # stop reads set, its reason is there to read too
                if stop.is_set():
                    raise (failures[0] if failures else RuntimeError("pipeline stopped")) from None
                continue

    busy = report.stage_seconds

    def decode() -> None:
        try:
            chunks = iter(stream)
            for k in itertools.count():
                clock = time.perf_counter()
                chunk = next(chunks, None)
                busy["decode"] += time.perf_counter() - clock
                if chunk is None or not put(decoded[k % n_workers], chunk):
                    break
            if chunk is None:
                for q in decoded:
                    put(q, _END)
        except BaseException as exc:
            failures.append(exc)
            stop.set()

    def predict(worker: int) -> None:
        try:
            if n_workers > 1:
                use_threads(threads)
            while True:
                chunk = get(decoded[worker])
                work = None
                if chunk is not _END and chunk.frames:
                    clock = time.perf_counter()
                    work = colour.predict(chunk.luma)
                    with timing:  # summed over the workers
                        busy["predict"] += time.perf_counter() - clock
                if not put(predicted[worker], (chunk, work)) or chunk is _END:
                    return
        except BaseException as exc:
            failures.append(exc)
            stop.set()

    def in_order() -> Iterator[Any]:
        """Each chunk and its predicted colour, (chunk, work), in the film's order; then _END."""
        for k in itertools.count():
            chunk, work = get(predicted[k % n_workers])
            yield _END if chunk is _END else (chunk, work)
            if chunk is _END:
                return

    def colourise() -> None:
        try:
            items = in_order()
            if keyframes is not None:
                guided = _guided(colour, stabilise, keyframes, options, report.frames)
                for item in guided(lambda: next(items)):
                    if not put(coloured, item):
                        return
                return
            for item in items:
                if item is _END:
                    put(coloured, _END)
                    return
                chunk, work = item
                codes, state = None, {}
                if stabilise is not None and chunk.segment_state is not None:
                    state = stabilise.state()  # what the segment starting here carries in
                if work is not None:
                    clock = time.perf_counter()
                    if stabilise is not None:
                        work = work.with_ab(stabilise(work.by_stream(), chunk.cuts))
                    busy["stabilise"] += (now := time.perf_counter()) - clock
                    codes = colour.chroma(work)
                    busy["chroma"] += time.perf_counter() - now
                if not put(coloured, (chunk, codes, state)):
                    return
        except BaseException as exc:
            failures.append(exc)
            stop.set()

    workers = [
        threading.Thread(target=decode, name="vidcolour-decode", daemon=True),
        *(
            threading.Thread(target=predict, args=(i,), name=f"vidcolour-model{i}", daemon=True)
            for i in range(n_workers)
        ),
        threading.Thread(target=colourise, name="vidcolour-colour", daemon=True),
    ]
    for worker in workers:
        worker.start()
    try:
        if progress is not None:
            progress(report.frames, report.expected_frames)
        while True:
            item = get(coloured)
            if item is _END:
                break
            chunk, codes, state = item
            clock = time.perf_counter()
            if chunk.segment_state is not None and isinstance(sink, SegmentWriter):
                sink.begin(report.frames, chunk.frames[0].pts, {**chunk.segment_state, **state})
            for packet in chunk.packets:
                sink.carry(packet)
            for i, frame in enumerate(chunk.frames):
                sink.write(frame, chunk.luma[i], codes[0][i], codes[1][i])
            busy["encode"] += time.perf_counter() - clock
            if report.cuts is not None:
                cuts = [report.frames + i for i, cut in enumerate(chunk.cuts) if cut]
                report.cuts += cuts
                if isinstance(sink, SegmentWriter):
                    sink.cuts += cuts
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
    colour: ColourStage,
    stabilise: StabiliseStage | None,
    keyframes: Keyframes,
    options: VideoOptions,
    start: int,
) -> Callable[[Callable[[], Any]], Iterator[Any]]:
    """The model stage with keyframes, from film frame ``start`` on: each chunk's automatic
    (stabilised) ab goes through the keyframe guide, and a chunk moves on once all its frames'
    colour is known, so chunks wait here for a keyframe ahead (at most ``keyframe_reach``
    frames' worth). The guide holds frames across a shot, so with keyframes a film's segments
    start only at cuts, where nothing is carried."""
    guide = KeyframeGuide(keyframes, options.keyframe_reach, start)

    def stage(next_item: Callable[[], Any]) -> Iterator[Any]:
        # chunk, its first frame's display index, its colour stage state, each frame's ab
        waiting: list[tuple[Chunk, int, WorkingColour | None, list[np.ndarray | None]]] = []
        frames = start  # film index of the next chunk's first frame
        while True:
            item = next_item()
            chunk, work = (_END, None) if item is _END else item
            resolved = guide.flush() if chunk is _END else []
            if chunk is not _END:
                if work is not None:
                    if stabilise is not None:
                        work = work.with_ab(stabilise(work.by_stream(), chunk.cuts))
                    lumas = flow_luma(work.y)
                    autos = work.ab.float().cpu().numpy()
                    for i in range(len(chunk.frames)):
                        resolved += guide.push(frames + i, chunk.cuts[i], lumas[i], autos[i])
                    work = dataclasses.replace(work, ab=work.ab[:0])  # held: not needed again
                waiting.append((chunk, frames, work, [None] * len(chunk.frames)))
                frames += len(chunk.frames)
            for index, ab_frame in resolved:
                _, first, _, slots = next(w for w in waiting if w[1] + len(w[3]) > index)
                slots[index - first] = ab_frame
            while waiting and all(s is not None for s in waiting[0][3]):
                done, _, work, slots = waiting.pop(0)
                codes = None
                if work is not None:
                    ab = torch.from_numpy(np.stack(slots)).to(work.y.device)  # type: ignore[arg-type]
                    codes = colour.chroma(work.with_ab([ab]))
                yield done, codes, {}
            if chunk is _END:
                if guide.missed:
                    raise VidcolourError(
                        f"keyframe for frame {guide.missed[0]} is past the film's end "
                        f"(frames 0-{frames - 1}); nothing written"
                    )
                yield _END
                return

    return stage
