"""Decode stage: open an input, describe it, and deliver its frames in batches.

Damaged input policy (docs/VIDEO.md): a packet the decoder rejects is counted and produces no
frame; a frame the decoder flags as corrupt is kept (it is what any player would show) and
counted. Frames keep the decoder's own timestamps; none are invented or repeated, so the output
has exactly the frames and times a player of the input would show.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vidcolour.errors import VidcolourError
from vidcolour.video.planes import Layout, is_planar_yuv, luma_view

FIELD_ORDERS = {0: "unknown", 1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}
MAX_CARRIED = 512  # other streams' packets per chunk: bounds memory on badly interleaved files
_PLANAR_FALLBACK = "yuv444p"  # RGB, packed and paletted input is converted to this when decoded


@dataclass
class Chunk:
    """Up to batch-size frames in decode order, and the other streams' packets read with them."""

    frames: list[av.VideoFrame]
    luma: np.ndarray  # (B, H, W) Y' codes, uint8 or uint16
    packets: list[av.Packet] = field(default_factory=list)
    cuts: list[bool] = field(default_factory=list)  # per frame: starts a shot (shots.mark_cuts)


@dataclass
class DecodeStats:
    bad_packets: int = 0  # rejected by the decoder: no frame came out of them
    corrupt_frames: int = 0  # decoded, but flagged as damaged by the decoder


class Source:
    """An opened input video. Close it (or use it as a context manager) when done."""

    def __init__(self, path: Path) -> None:
        self.path = path
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
            raise VidcolourError(
                f"{path} is a still image ({kind}), not a video: give it an image extension "
                "(.jpg, .png, .tif, ...) to colourise it as a still"
            )
        if not self.container.streams.video:
            self.container.close()
            raise VidcolourError(f"{path} has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.stats = DecodeStats()
        self.read_error: str | None = None  # why demuxing stopped early, if it did

    # ----------------------------------------------------------------------------- description
    @property
    def expected_frames(self) -> int | None:
        """The container's frame count, or one estimated from its duration; None if unknown."""
        if self.stream.frames:
            return int(self.stream.frames)
        rate = self.stream.average_rate or self.stream.guessed_rate
        if self.stream.duration and self.stream.time_base and rate:
            return max(1, round(float(self.stream.duration * self.stream.time_base * rate)))
        if self.container.duration and rate:
            return max(1, round(self.container.duration / av.time_base * float(rate)))
        return None

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
        """Decoded video frames (planar Y'CbCr) and other streams' packets, in file order."""
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
            if not is_planar_yuv(frame.format.name):
                frame = frame.reformat(format=_PLANAR_FALLBACK)
            yield frame

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


def _describe(layout: Layout) -> str:
    return f"{layout.width}x{layout.height} {layout.pix_fmt}"


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
