"""Long films in segments: a crash costs one segment, not the film (docs/BATCH.md, "Segments").

While a film is colourised, its output is written as a series of complete files in a work
folder beside it, ``.NAME.vidcolour-work/``:

    00000.mkv  00001.mkv ...  manifest.json  state-00001.npz ...

Each segment is the colourised video alone, from a new encoder, so it starts on a key frame. It
is recorded in the manifest once it is finished and on disk: frame range, the timestamp of the
frame after it, size, SHA-256, cuts and decode damage, and in state-K.npz (arrays only, no
pickle) what segment K needs to start exactly where K-1 stopped: the shot detector's state,
the stabiliser's carried colour and the running checks. A new segment starts at the first cut
after ``target`` frames, or, in a shot that long, ``cap`` frames in (the state carries its
colour across). Frames are batched afresh from each segment's start, so a resumed run batches,
and so computes, exactly what an uninterrupted one does.

A rerun with the same input, model and settings (the manifest's key) checks the finished
segments, seeks the input to where the next one starts and goes on. At the end ``join`` copies
the segments' packets into the output, with the input's sound, subtitles, chapters and metadata
copied whole, and the caller removes the work folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import itertools
import json
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from vidcolour.errors import VidcolourError
from vidcolour.fsutil import file_sha256, short_name
from vidcolour.video.checks import TemporalChecks
from vidcolour.video.shots import ShotDetector, signature
from vidcolour.video.sink import Sink
from vidcolour.video.source import Chunk, DecodeStats, Source

MANIFEST = "manifest.json"
FORMAT = 1  # of the manifest
CAP_FACTOR = 2  # a shot longer than CAP_FACTOR x the target is split, its state carried across
_FINGERPRINT_BYTES = 1 << 20
_TIME_SLACK = 1e-3  # seconds: timestamps rounded to a time base's ticks (ms in Matroska)


def work_path(dst: Path) -> Path:
    """The work folder of the output ``dst``."""
    return dst.parent / f".{short_name(dst.name, 16)}.vidcolour-work"


def fingerprint(path: Path) -> dict[str, Any]:
    """What identifies an input without reading all of it: size, modification time and the
    SHA-256 of its first and last MiB."""
    stat = path.stat()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        digest.update(f.read(_FINGERPRINT_BYTES))
        f.seek(max(0, stat.st_size - _FINGERPRINT_BYTES))
        digest.update(f.read(_FINGERPRINT_BYTES))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}


@dataclass
class Segment:
    """A finished segment, as the manifest records it."""

    file: str
    first: int  # display index of its first frame
    frames: int
    size: int
    sha256: str
    next_pts: int | None  # timestamp of the frame after its last (video time base); None: end
    cuts: list[int] = field(default_factory=list)  # film frame indices that start a shot
    bad_packets: int = 0
    corrupt_frames: int = 0

    @property
    def end(self) -> int:
        return self.first + self.frames


class WorkFolder:
    """The finished segments of one output, and where the next one starts."""

    def __init__(self, dst: Path, key: str, suffix: str) -> None:
        self.path = work_path(dst)
        self.key = key
        self.suffix = suffix
        self.segments: list[Segment] = []
        self.complete = False  # the last segment reaches the film's end
        self.joined: dict[str, Any] | None = None  # the output joined from them (fingerprint)

    def open(self, resume: bool, overwrite: bool, tell: Callable[[str], None]) -> None:
        """Take up the finished segments of an earlier run (``resume``), checking each; without
        ``resume`` an earlier run's segments are refused unless ``overwrite`` discards them."""
        found = self._read()
        if found is not None and found.get("segments") and not resume:
            if not overwrite:
                raise VidcolourError(
                    f"{self.path} holds {len(found['segments'])} finished segments of an earlier "
                    "run: add --resume to go on from them, or --overwrite to start again"
                )
            found = None
        if found is not None and found.get("key") != self.key:
            tell(
                f"{self.path}: {key_change(found.get('key'), self.key)} changed since its "
                f"{len(found.get('segments', []))} segments were made; starting again"
            )
            found = None
        self.path.mkdir(exist_ok=True)
        if found is not None:
            self._take(found, tell)
        self._save()
        states = (self._state_name(k + 1) for k in range(len(self.segments)))
        keep = {MANIFEST, *(s.file for s in self.segments), *states}  # a state: ~1 MB at 1080p
        for stale in self.path.iterdir():  # partial segments, states of discarded ones
            if stale.name not in keep:
                stale.unlink()

    def _read(self) -> dict[str, Any] | None:
        try:
            found = json.loads((self.path / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) and found.get("format") == FORMAT else None

    def _take(self, found: dict[str, Any], tell: Callable[[str], None]) -> None:
        """The recorded segments up to the first damaged one (checked by size, hash and frame
        count); that one and those after it are made again."""
        for record in found["segments"]:
            segment = Segment(**record)
            index = len(self.segments)
            path = self.path / segment.file
            state = self.path / self._state_name(index + 1)
            problem = _damage(path, segment)
            if problem is None and segment.next_pts is not None and not state.is_file():
                problem = "the state after it is missing"
            if problem is not None:
                tell(f"{path}: {problem}; made again")
                return
            self.segments.append(segment)
        self.complete = bool(found.get("complete")) and len(self.segments) == len(found["segments"])

    # -------------------------------------------------------------------------------- state
    @property
    def next_frame(self) -> int:
        return self.segments[-1].end if self.segments else 0

    @property
    def next_pts(self) -> int | None:
        return self.segments[-1].next_pts if self.segments else None

    def state(self) -> dict[str, np.ndarray]:
        """The state the next segment starts from ({} at the film's start)."""
        if not self.segments:
            return {}
        with np.load(self.path / self._state_name(len(self.segments)), allow_pickle=False) as f:
            return {k: f[k] for k in f.files}

    def part(self) -> Path:
        """Where the next segment is written until it is finished."""
        return self.path / f"{len(self.segments):05d}{self.suffix}.part"

    def add(self, part: Path, segment: Segment, state: Mapping[str, np.ndarray] | None) -> None:
        """Record a finished segment (written at ``part``) and the state after it: on disk
        before the manifest names it, so a crash at any moment leaves a consistent folder."""
        _fsync(part)
        os.replace(part, self.path / segment.file)
        if state is not None:
            name = self.path / self._state_name(len(self.segments) + 1)
            with name.with_suffix(".tmp").open("wb") as f:
                np.savez_compressed(f, **dict(state))  # type: ignore[arg-type]
            _fsync(name.with_suffix(".tmp"))
            os.replace(name.with_suffix(".tmp"), name)
        self.segments.append(segment)
        self.complete = segment.next_pts is None
        self._save()

    def segment_name(self) -> str:
        return f"{len(self.segments):05d}{self.suffix}"

    def record_joined(self, output: Path) -> None:
        """Record that the segments were joined into ``output`` (before it is renamed into
        place): a run stopped after the rename, before ``remove``, is then told from an output
        that is not this work's (``joined_into``)."""
        self.joined = fingerprint(output)
        self._save()

    def joined_into(self, dst: Path) -> bool:
        """Whether the manifest, of this key, records ``dst`` as the output joined from it."""
        found = self._read()
        return (
            found is not None
            and found.get("key") == self.key
            and found.get("joined") is not None
            and found["joined"] == fingerprint(dst)
        )

    def remove(self) -> None:
        remove_work(self.path)

    def _save(self) -> None:
        manifest = {
            "format": FORMAT,
            "key": self.key,
            "complete": self.complete,
            "segments": [asdict(s) for s in self.segments],
        }
        if self.joined is not None:
            manifest["joined"] = self.joined
        tmp = self.path / f"{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=1))
        _fsync(tmp)
        os.replace(tmp, self.path / MANIFEST)

    @staticmethod
    def _state_name(index: int) -> str:
        return f"state-{index:05d}.npz"


# What each part of a work key (video/pipeline.py, ``_work_key``) is, for the user.
KEY_PARTS = {
    "input": "the input",
    "model": "the model",
    "options": "the settings",
    "revision": "what this vidcolour version computes",
}


def remove_work(folder: Path) -> None:
    """A work folder, its manifest last: stopped part-way, the record of what it joined stays
    (``WorkFolder.joined_into``). What cannot be removed stays: the output is written."""
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if entry.name != MANIFEST:
                entry.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


def key_change(before: object, now: str) -> str:
    """The parts of a work key that differ between ``before`` (as a manifest holds it) and
    ``now``, in words; all of them, hedged, when ``before`` cannot be read part by part."""
    try:
        old, new = json.loads(before), json.loads(now)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        old = new = None
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return "the input, model, settings or vidcolour version"
    parts = [words for name, words in KEY_PARTS.items() if old.get(name) != new.get(name)]
    if not parts:  # only parts this version does not know
        return "the input, model, settings or vidcolour version"
    if parts[-1] == KEY_PARTS["revision"]:
        parts[-1] += f" (output revision {old.get('revision', 'none')} -> {new.get('revision')})"
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def _damage(path: Path, segment: Segment) -> str | None:
    """Why a recorded segment cannot be used, or None."""
    try:
        if path.stat().st_size != segment.size:
            return "its size differs from the record (damaged or partial)"
        if file_sha256(path) != segment.sha256:
            return "its content differs from the record (damaged)"
        with av.open(str(path)) as container:
            count = sum(1 for p in container.demux(container.streams.video[0]) if p.size)
    except (OSError, av.FFmpegError, IndexError):
        return "it is missing or unreadable"
    if count != segment.frames:
        return f"it holds {count} frames, not the {segment.frames} recorded"
    return None


def _fsync(path: Path) -> None:
    with path.open("rb+") as f:
        os.fsync(f.fileno())


# ------------------------------------------------------------------------------ cutting up
def segment_chunks(
    chunks: Iterable[Chunk],
    bits: int,
    batch_size: int,
    target: float,
    cap: float | None,
    detector: ShotDetector,
    rate: float,
) -> Iterator[Chunk]:
    """The video frames of ``chunks`` with their cuts found, batched afresh from each segment's
    start; a segment's first chunk carries the detector's state before its first frame
    (``Chunk.segment_state``). The first chunk starts a segment; another starts at the first
    cut ``target`` seconds of film into one, or ``cap`` seconds in (None: only at cuts).
    Seconds are the frames' timestamps (variable frame rates too), or frames at ``rate``
    where there are none. Other streams' packets are dropped: the join copies them whole."""
    pending: deque[tuple[av.VideoFrame, np.ndarray]] = deque()  # pushed, not yet decided
    batch: list[tuple[av.VideoFrame, np.ndarray, bool]] = []
    starting: dict[str, np.ndarray] | None = None
    length = -1  # frames in the current segment; -1 before the first
    began: float | None = None  # its first frame's time

    def emit() -> Chunk:
        nonlocal starting
        frames, lumas, cuts = zip(*batch, strict=True)
        chunk = Chunk(list(frames), np.stack(lumas), [], list(cuts), starting)
        batch.clear()
        starting = None
        return chunk

    def decided(cut: bool, before: dict[str, np.ndarray]) -> Iterator[Chunk]:
        """The oldest pending frame was decided (``cut``) from the state ``before``."""
        nonlocal length, starting, began
        frame, luma = pending.popleft()
        now = frame.time
        into = now - began if now is not None and began is not None else length / rate
        into += _TIME_SLACK
        if length < 0 or (cut and into >= target) or (cap is not None and into >= cap):
            if batch:
                yield emit()
            starting, length, began = before, 0, now
        batch.append((frame, luma, cut))
        length += 1
        if len(batch) == batch_size:
            yield emit()

    for chunk in chunks:
        for frame, luma in zip(chunk.frames, chunk.luma, strict=True):
            pending.append((frame, luma))
            before = detector.state()  # a push decides at most one frame: the oldest
            for cut in detector.push(signature(luma, bits)):
                yield from decided(cut, before)
    while detector.pending:
        before = detector.state()
        yield from decided(detector.flush_one(), before)
    if batch:
        yield emit()


class SegmentWriter:
    """The encode stage of a film made in segments: each segment through its own ``Sink``."""

    def __init__(
        self,
        work: WorkFolder,
        open_sink: Callable[[Path], Sink],
        stats: Callable[[], DecodeStats],
        checks: TemporalChecks | None,
        on_segment: Callable[[int, int], None] | None,
    ) -> None:
        self.work = work
        self.open_sink = open_sink
        self.stats = stats  # the decoder's running counts, this run
        self.checks = checks
        self.on_segment = on_segment
        self.sink: Sink | None = None
        self.first = work.next_frame
        self.frames = 0
        self.cuts: list[int] = []
        self._damage = (0, 0)  # the decoder's counts when this segment began

    def begin(self, frame: int, pts: int | None, state: Mapping[str, np.ndarray]) -> None:
        """A segment starts at film frame ``frame`` (timestamp ``pts``); ``state``: what the
        pipeline carries into it besides the checks."""
        if self.sink is not None:
            checks = self.checks.state() if self.checks is not None else {}
            self._finish(pts, {**state, **checks})
        self.sink = self.open_sink(self.work.part())
        self.first, self.frames, self.cuts = frame, 0, []
        stats = self.stats()
        self._damage = (stats.bad_packets, stats.corrupt_frames)

    def write(self, frame: av.VideoFrame, luma: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> None:
        assert self.sink is not None, "begin comes first"
        self.sink.write(frame, luma, cb, cr)
        self.frames += 1

    def carry(self, packet: av.Packet) -> None:
        """Other streams are copied whole when the segments are joined."""

    def cut(self, frame: int) -> None:
        self.cuts.append(frame)

    def close(self) -> None:
        """The film ended: finish the last segment."""
        if self.sink is not None:
            self._finish(None, None)

    def abort(self) -> None:
        if self.sink is not None:
            self.sink.abort()
            self.work.part().unlink(missing_ok=True)
            self.sink = None

    def _finish(self, next_pts: int | None, state: Mapping[str, np.ndarray] | None) -> None:
        assert self.sink is not None
        self.sink.close()
        self.sink = None
        part = self.work.part()
        stats = self.stats()
        segment = Segment(
            file=self.work.segment_name(),
            first=self.first,
            frames=self.frames,
            size=part.stat().st_size,
            sha256=file_sha256(part),
            next_pts=next_pts,
            cuts=self.cuts,
            bad_packets=stats.bad_packets - self._damage[0],
            corrupt_frames=stats.corrupt_frames - self._damage[1],
        )
        self.work.add(part, segment, state)
        if self.on_segment is not None:
            self.on_segment(len(self.work.segments), self.work.next_frame)


# ---------------------------------------------------------------------------------- joining
CHECK_PACKETS = 256  # a join looks for a stop this often: 3-10 s of a film, sound included


def join(
    work: WorkFolder,
    open_output: Callable[[Any], Sink],
    source: Source,
    check: Callable[[], None] = lambda: None,
) -> int:
    """Copy the segments' video packets, in order, into the output ``open_output`` makes
    (given the first segment's video stream as its template), with ``source``'s sound and
    subtitle packets interleaved by time. Returns the video packets copied. ``check`` is
    called every ``CHECK_PACKETS`` packets: it may raise to stop the join (a film's join
    copies gigabytes, longer than Slurm waits between SIGTERM and its kill)."""
    with av.open(str(work.path / work.segments[0].file)) as first:
        template = first.streams.video[0]
        extradata = template.codec_context.extradata
        sink = open_output(template)
    copied = 0
    try:
        video = _segment_packets(work, extradata)
        carried = set(sink.carried)
        streams = [s for s in source.container.streams if s.index in carried]
        other = (p for p in source.container.demux(streams) if p.dts is not None) if streams else ()
        for count, packet in enumerate(heapq.merge(video, other, key=_time)):
            if count % CHECK_PACKETS == 0:
                check()
            if packet.stream.type == "video":
                sink.copy(packet)
                copied += 1
            else:
                sink.carry(packet)
        sink.close()
    except BaseException:
        sink.abort()
        raise
    return copied


def _segment_packets(work: WorkFolder, extradata: bytes | None) -> Iterator[av.Packet]:
    for segment in work.segments:
        with av.open(str(work.path / segment.file)) as container:
            stream = container.streams.video[0]
            if stream.codec_context.extradata != extradata:
                raise VidcolourError(
                    f"{work.path / segment.file} was encoded with other codec parameters than "
                    "the first segment; remove the work folder and start again"
                )
            yield from _with_dts(p for p in container.demux(stream) if p.size)


def _with_dts(packets: Iterator[av.Packet]) -> Iterator[av.Packet]:
    """``packets`` in decode order, each with a decoding timestamp. Matroska keeps only
    presentation times, and its demuxer leaves out the dts of the frames before the first
    it can infer (the two that x264's B-frames delay): a muxer needs them. Each run of them
    gets the ticks just below the next known dts (or, at the end, the smallest pts still to
    come), never above its own pts: Matroska does not store them, and other containers'
    demuxers give their own."""
    run: list[av.Packet] = []
    last: int | None = None
    for packet in itertools.chain(packets, [None]):
        if packet is not None and packet.dts is None and packet.pts is not None:
            run.append(packet)
            continue
        for i, held in enumerate(run):
            if packet is not None and packet.dts is not None:
                below = packet.dts - (len(run) - i)
            else:
                below = min(p.pts or 0 for p in run[i:])
            dts = min(below, held.pts or 0)
            held.dts = last = dts if last is None else max(dts, last)
            yield held
        run.clear()
        if packet is not None:
            last = packet.dts if packet.dts is not None else last
            yield packet


def _time(packet: av.Packet) -> float:
    stamp = packet.dts if packet.dts is not None else packet.pts
    if stamp is None or packet.time_base is None:
        return float("-inf")
    return float(stamp * packet.time_base)


def fresh_detector(state: Mapping[str, np.ndarray]) -> ShotDetector:
    """The shot detector a segment starts with: restored from ``state``, or new."""
    return ShotDetector.resumed(state) if "shot_armed" in state else ShotDetector()
