"""Decode stage: open an input, describe it, and deliver its frames in batches.

Damaged input policy (docs/VIDEO.md): a packet the decoder rejects is counted and produces no
frame; a frame the decoder flags as corrupt is kept (it is what any player would show) and
counted. Frames keep the decoder's own timestamps; none are invented or repeated, so the output
has exactly the frames and times a player of the input would show.
"""

from __future__ import annotations

import contextlib
import itertools
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vidcolour.errors import VidcolourError
from vidcolour.stills import IMAGE_FORMATS
from vidcolour.video.planes import Layout, is_planar_yuv, luma_view

FIELD_ORDERS = {0: "unknown", 1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}
MAX_CARRIED = 512  # other streams' packets per chunk: bounds memory on badly interleaved files
SUBTITLE_REACH = 10.0  # seconds before a stretch searched for the subtitle showing at its start
# How far before a stretch's start a seek is tried again where it landed past it (seconds)
SEEK_REACHES = (0.0, 10.0, 60.0)
_PLANAR_FALLBACK = "yuv444p"  # RGB, packed and paletted input is converted to this when decoded


@dataclass
class Chunk:
    """Up to batch-size frames in decode order, and the other streams' packets read with them."""

    frames: list[av.VideoFrame]
    luma: np.ndarray  # (B, H, W) Y' codes, uint8 or uint16
    packets: list[av.Packet] = field(default_factory=list)
    cuts: list[bool] = field(default_factory=list)  # per frame: starts a shot (shots.mark_cuts)
    # Set on the first chunk of a long film's segment (video/segments.py): the shot detector's
    # state before its first frame, which the next run needs to start there.
    segment_state: dict[str, np.ndarray] | None = None


@dataclass
class DecodeStats:
    bad_packets: int = 0  # rejected by the decoder: no frame came out of them
    corrupt_frames: int = 0  # decoded, but flagged as damaged by the decoder


@dataclass(frozen=True)
class Stretch:
    """A part of a film, in seconds from its start: what ``--start`` and ``--duration`` ask for.

    Its frames and other streams' packets are delivered alone, every timestamp moved ``start``
    earlier, so that the output is a clip of its own that begins at (about) 0 with picture and
    sound still together. The frames are those whose time lies in the stretch. Sound keeps the
    packets that overlap it, the first one starting up to one packet before ``start`` (so at a
    negative time) and the last ending up to one packet after the end; each of those two
    carries AV_PKT_DATA_SKIP_SAMPLES side data saying how many of its samples lie outside, and
    the last one's duration is cut to the end. What a container makes of that
    (docs/VIDEO.md, "A stretch"): .mp4/.mov write an edit list that trims the start exactly,
    .mkv writes DiscardPadding that trims the end exactly; a re-encoded stream is trimmed
    exactly at both. A subtitle showing at ``start`` is kept, its time clipped to it."""

    start: float = 0.0
    duration: float | None = None  # None: to the end

    @property
    def end(self) -> float:
        return self.start + self.duration if self.duration is not None else float("inf")


class Source:
    """An opened input video. Close it (or use it as a context manager) when done."""

    def __init__(self, path: Path, stretch: Stretch | None = None) -> None:
        self.path = path
        self.stretch = stretch
        if not path.exists():
            raise VidcolourError(f"{path}: no such file")
        if path.is_dir():
            raise VidcolourError(f"{path} is a directory, not a video")
        if path.stat().st_size == 0:
            raise VidcolourError(f"{path} is empty (0 bytes)")
        try:
            self.container = av.open(str(path), metadata_errors="ignore")
        except PermissionError:
            raise VidcolourError(f"{path}: permission denied") from None
        except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise VidcolourError(f"{path} is not a video PyAV can read ({_reason(exc)})") from None
        if self.container.format.name.endswith("_pipe"):  # FFmpeg's single-image demuxers
            # A still under a video's name (a JPEG named .mp4) would become a one-frame video;
            # as a still it keeps its size, precision and metadata.
            kind = self.container.format.name.removesuffix("_pipe").upper()
            self.container.close()
            hint = (
                "this works on videos (`vidcolour run` colourises stills)"
                if path.suffix.lower() in IMAGE_FORMATS
                else "give it an image extension (.jpg, .png, .tif, ...) to colourise it as a still"
            )
            raise VidcolourError(f"{path} is a still image ({kind}), not a video: {hint}")
        if not self.container.streams.video:
            self.container.close()
            raise VidcolourError(f"{path} has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.resume: tuple[int, int | None] | None = None  # (frame, its pts): see resume_at
        self.stats = DecodeStats()
        self.read_error: str | None = None  # why demuxing stopped early, if it did
        self._reached: float | None = None  # where the last decoded frame ends, s from origin
        self._last_start: float | None = None  # and where it starts
        self._origin = (self.container.start_time or 0) / av.time_base  # seconds
        length = self._length()
        if stretch is not None and length and stretch.start >= length:
            self.container.close()
            raise VidcolourError(
                f"{path}: --start {stretch.start:g} s is past its end ({length:.1f} s)"
            )

    # ----------------------------------------------------------------------------- description
    @property
    def expected_frames(self) -> int | None:
        """The container's frame count, or one estimated from its duration (of the stretch,
        when there is one); None if unknown."""
        whole = self._whole_frames()
        if self.stretch is None:
            return whole
        rate = self.rate
        if rate is None:
            return None
        left = whole - round(self.stretch.start * rate) if whole is not None else None
        asked = round(self.stretch.duration * rate) if self.stretch.duration else None
        counts = [n for n in (left, asked) if n is not None]
        return max(1, min(counts)) if counts else None

    def _whole_frames(self) -> int | None:
        if self.stream.frames:
            return int(self.stream.frames)
        rate = self.stream.average_rate or self.stream.guessed_rate
        if self.stream.duration and self.stream.time_base and rate:
            return max(1, round(float(self.stream.duration * self.stream.time_base * rate)))
        length = self._length()
        if length and rate:
            return max(1, round(length * float(rate)))
        return None

    def _length(self) -> float:
        """The film's length in seconds from its container; 0 if unknown."""
        return self._span((self.container.duration or 0) / av.time_base)

    def _span(self, end: float) -> float:
        """A Matroska duration as a span. FFmpeg writes a segment's duration and its tracks'
        DURATION tags as their last time: a film FFmpeg wrote with times from 1 h on would
        otherwise announce an hour more. Other writers (mkvmerge) write the span itself."""
        container = self.container
        encoder = container.metadata.get("ENCODER") or container.metadata.get("encoder") or ""
        lavf_mkv = "matroska" in container.format.name and encoder.startswith("Lavf")
        return end - self._origin if lavf_mkv and 0 < self._origin < end else end

    def outcome(self) -> tuple[DecodeStats, str | None, str | None]:
        """What reading found, for the report: the decoding's counts, why demuxing stopped
        early (None: it did not) and why the picture seems cut short (``cut_short``)."""
        return self.stats, self.read_error, self.cut_short()

    def cut_short(self) -> str | None:
        """Why the picture seems to end early, or None: its last decoded frame ends more than
        1% (and two frames) before the time its container announces for it (of the stretch,
        when there is one). By time, not by frame count, which a variable frame rate makes an
        estimate. None where nothing was decoded (a resumed film's segments all done)."""
        if self._reached is None:
            return None
        announced = self._announced()
        if self.stretch is not None:
            announced = min(announced, self.stretch.end) - self.stretch.start
            reached = self._reached - self.stretch.start
        else:
            reached = self._reached
        step = 1 / float(self.rate) if self.rate else 0.1  # no rate: a slow one's frame
        if announced <= 0 or reached >= 0.99 * announced - 2 * step:
            return None
        return f"the picture ends at {reached:.2f} s of the {announced:.2f} s announced"

    def _announced(self) -> float:
        """How long the container says the picture lasts (seconds from the film's start): the
        video stream's own duration, or Matroska's DURATION tag for it, else the film's."""
        s = self.stream
        if s.duration and s.time_base:
            return (
                float((s.start_time or 0) * s.time_base)
                - self._origin
                + float(s.duration * s.time_base)
            )
        tag = s.metadata.get("DURATION")
        if tag:
            with contextlib.suppress(ValueError):
                hours, minutes, seconds = tag.split(":")
                return self._span(int(hours) * 3600 + int(minutes) * 60 + float(seconds))
        return self._length()

    @property
    def field_order(self) -> str:
        return FIELD_ORDERS.get(self.stream.codec_context.field_order, "unknown")

    @property
    def rate(self) -> Fraction | None:
        return self.stream.average_rate or self.stream.guessed_rate or None

    def other_streams(self) -> list[av.stream.Stream]:
        """Audio and subtitle streams, whose packets are carried over."""
        return [s for s in self.container.streams if s.type in ("audio", "subtitle")]

    # ---------------------------------------------------------------------------------- frames
    def frames(self) -> Iterator[av.VideoFrame | av.Packet]:
        """Decoded video frames (planar Y'CbCr) and other streams' packets, in file order
        (of the stretch alone, when there is one)."""
        if self.resume is not None:
            yield from self._resumed_frames(*self.resume)
        elif self.stretch is None:
            yield from self._all_frames()
        else:
            yield from self._stretch_frames(self.stretch)

    def resume_at(self, frame: int, pts: int | None) -> None:
        """Deliver the video frames from display index ``frame`` on (whose timestamp is
        ``pts``, in the stream's time base), without the other streams' packets: a long film's
        next segment (video/segments.py). The input is sought to the key frame before it and
        what comes before is dropped; where it cannot seek, or the seek does not land on that
        timestamp, it is decoded from the start and ``frame`` frames are dropped."""
        self.resume = (frame, pts)

    def _resumed_frames(self, index: int, pts: int | None) -> Iterator[av.VideoFrame]:
        if pts is not None and index:
            with contextlib.suppress(av.FFmpegError):
                self.container.seek(pts, backward=True, stream=self.stream)
                frames = self._video_frames()
                for frame in frames:
                    if frame.pts is None or frame.pts > pts:
                        break  # landed past it, or no timestamps to go by: count instead
                    if frame.pts == pts:
                        self.stats = DecodeStats()  # what lies before belongs to earlier runs
                        yield frame
                        yield from frames
                        return
        self._reopen()
        frames = self._video_frames()
        for _ in itertools.islice(frames, index):
            pass
        self.stats = DecodeStats()
        yield from frames

    def _reopen(self) -> None:
        """Open the file again, at its start."""
        self.container.close()
        self.container = av.open(str(self.path), metadata_errors="ignore")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.stats = DecodeStats()

    def _video_frames(self) -> Iterator[av.VideoFrame]:
        return (item for item in self._all_frames() if isinstance(item, av.VideoFrame))

    def _stretch_frames(self, stretch: Stretch) -> Iterator[av.VideoFrame | av.Packet]:
        start, end = self._origin + stretch.start, self._origin + stretch.end
        # The preview starts at 0: a film whose times start later (MPEG-TS's 1.4 s, a tape's
        # hour) loses that start too. An origin before 0 (sound's priming) stays as it was.
        shift = stretch.start + max(self._origin, 0.0)
        items = self._all_frames()
        if stretch.start > 0:
            # a subtitle line showing at the start began before it: reach back for it
            subtitles = any(s.type == "subtitle" for s in self.other_streams())
            target = max(self._origin, start - SUBTITLE_REACH) if subtitles else start
            items = self._sought(target, start)
        waiting = {s.index for s in self.other_streams()}  # streams not yet past the end
        video_done = False
        for item in items:
            time = _seconds(item)
            if isinstance(item, av.VideoFrame):
                if video_done or (time is not None and time < start):
                    continue
                if time is not None and time >= end:
                    video_done = True
                    if not waiting:
                        return
                    continue
                yield _moved(item, shift)
                continue
            if time is not None and time >= end:
                waiting.discard(item.stream.index)
                if video_done and not waiting:
                    return
                continue
            if time is not None and _cut(item, time, start, end):
                yield _moved(item, shift)

    def _sought(self, target: float, start: float) -> Iterator[av.VideoFrame | av.Packet]:
        """The film's frames and packets from a point at or before ``start`` (seconds), sought
        towards ``target``. A seek can land past the point asked for (MPEG-TS lands on the key
        frame after it, losing the frames between): then further back, at worst the film from
        its start, decoded up to the stretch."""
        for reach in SEEK_REACHES:
            try:
                self.container.seek(round((target - reach) * av.time_base), backward=True)
            except av.FFmpegError:  # not seekable
                break
            self.stats = DecodeStats()
            items = self._all_frames()
            held: list[av.VideoFrame | av.Packet] = []
            for item in items:
                held.append(item)
                if isinstance(item, av.VideoFrame):
                    break
            landed = _seconds(held[-1]) if held else None
            if landed is None or landed <= start:
                return itertools.chain(held, items)
        self._reopen()
        return self._all_frames()

    def _all_frames(self) -> Iterator[av.VideoFrame | av.Packet]:
        carried = {s.index for s in self.other_streams()}
        wanted = [self.stream, *(s for s in self.container.streams if s.index in carried)]
        try:
            for packet in self.container.demux(wanted):
                if packet.stream.index != self.stream.index:
                    if packet.dts is not None:  # demuxers end each stream with an empty packet
                        yield packet
                    continue
                yield from self._decode(packet)
            yield from self._decode(None)  # flush the decoder's delayed frames
        except av.FFmpegError as exc:  # demuxing failed: the rest of the file is unreadable
            self.stats.bad_packets += 1
            self.read_error = _reason(exc)

    def _decode(self, packet: av.Packet | None) -> Iterator[av.VideoFrame]:
        try:
            frames = self.stream.decode(packet)
        except av.EOFError:  # already flushed by the demuxer's end-of-stream packet
            return
        except av.FFmpegError:
            self.stats.bad_packets += 1
            return
        for frame in frames:
            if frame.is_corrupt:
                self.stats.corrupt_frames += 1
            if frame.pts is not None and frame.time_base is not None:
                self._reach(frame.pts, frame.duration, frame.time_base)
            if not is_planar_yuv(frame.format.name):
                frame = frame.reformat(format=_PLANAR_FALLBACK)
            yield frame

    def _reach(self, pts: int, duration: int | None, time_base: Fraction) -> None:
        """Note where a decoded frame ends (``cut_short``): by its duration, or where its
        decoder gives none, the gap since the frame before (a last frame may be held long)."""
        start = float(pts * time_base) - self._origin
        if duration:
            length = float(duration * time_base)
        else:
            length = max(0.0, start - self._last_start) if self._last_start is not None else 0.0
        self._last_start = start
        end = start + length
        self._reached = end if self._reached is None else max(self._reached, end)

    def chunks(self, batch_size: int) -> Iterator[Chunk]:
        """Frames grouped into batches of one geometry, with the packets read alongside."""
        frames: list[av.VideoFrame] = []
        packets: list[av.Packet] = []
        layout: Layout | None = None
        for item in self.frames():
            if isinstance(item, av.Packet):
                packets.append(item)
                if len(packets) >= MAX_CARRIED:  # a long run of sound without pictures
                    yield _chunk([], layout, packets)
                    packets = []
                continue
            this = Layout(item.format.name, item.width, item.height)
            if layout is None:
                layout = this
            elif this != layout:
                raise VidcolourError(
                    f"{self.path}: the picture changes from {_describe(layout)} to "
                    f"{_describe(this)} mid-stream (not supported)"
                )
            frames.append(item)
            if len(frames) == batch_size:
                yield _chunk(frames, layout, packets)
                frames, packets = [], []
        if frames or packets:
            yield _chunk(frames, layout, packets)

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chunk(frames: list[av.VideoFrame], layout: Layout | None, packets: list[av.Packet]) -> Chunk:
    if not frames or layout is None:
        return Chunk([], np.zeros((0, 0, 0), np.uint8), packets)
    return Chunk(frames, np.stack([luma_view(f, layout) for f in frames]), packets)  # a copy


def _seconds(item: av.VideoFrame | av.Packet) -> float | None:
    if item.pts is None or item.time_base is None:
        return None
    return float(item.pts * item.time_base)


def _cut(packet: av.Packet, time: float, start: float, end: float) -> bool:
    """Whether ``packet`` (starting at ``time`` s, before ``end``) overlaps the stretch
    [start, end); if so, a subtitle is clipped to start at ``start``, and sound that reaches
    outside the stretch is marked with the samples to skip at either side."""
    length = _packet_seconds(packet)
    if time < start and time + length <= start:
        return False
    if packet.stream.type == "subtitle":
        if time < start and packet.duration and packet.time_base is not None:
            clip = round((start - time) / packet.time_base)
            packet.pts = (packet.pts or 0) + clip
            packet.dts = packet.pts
            packet.duration -= clip
        return True
    rate = getattr(packet.stream, "sample_rate", 0) or 0
    head = round((start - time) * rate) if time < start else 0
    tail = round((time + length - end) * rate) if time + length > end else 0
    if tail and packet.duration and packet.time_base is not None:
        packet.duration = max(1, round((end - time) / packet.time_base))
    if head or tail:
        _skip_samples(packet, head, tail)
    return True


def _packet_seconds(packet: av.Packet) -> float:
    """How long ``packet`` lasts: its duration, or else its codec's frame size; 0 if unknown."""
    if packet.duration and packet.time_base is not None:
        return float(packet.duration * packet.time_base)
    context = packet.stream.codec_context
    frame_size = getattr(context, "frame_size", 0) if context is not None else 0
    rate = getattr(packet.stream, "sample_rate", 0) or 0
    return frame_size / rate if frame_size and rate else 0.0


def _skip_samples(packet: av.Packet, head: int, tail: int) -> None:
    """Attach AV_PKT_DATA_SKIP_SAMPLES: ``head`` samples to drop at the packet's start and
    ``tail`` at its end (PyAV 16 and later can write packet side data; before, nothing)."""
    side_data = getattr(av.packet, "PacketSideData", None)
    if side_data is None:
        return
    kind = av.packet.packet_sidedata_type_from_literal("skip_samples")
    data = side_data(kind, 10)
    data.update(struct.pack("<IIBB", max(0, head), max(0, tail), 0, 0))
    packet.set_sidedata(data)


def _moved(item: av.VideoFrame | av.Packet, seconds: float) -> av.VideoFrame | av.Packet:
    """``item`` with its timestamps ``seconds`` earlier."""
    if seconds and item.time_base is not None:
        shift = round(seconds / item.time_base)
        if item.pts is not None:
            item.pts -= shift
        if isinstance(item, av.Packet) and item.dts is not None:
            item.dts -= shift
    return item


def _describe(layout: Layout) -> str:
    return f"{layout.width}x{layout.height} {layout.pix_fmt}"


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
