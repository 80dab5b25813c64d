"""Encode stage: the output container, its colourised video stream and the carried-over streams.

The video stream copies the input's timing (time base and every frame's timestamp), sample
aspect ratio, field order, rotation and colour tags; audio and subtitle packets are copied
unchanged. The output frames are the decoded input frames with new chroma planes, so their luma
is the input's own plane. AVI stores no timestamps, only a frame rate: there each frame takes
the slot of that rate nearest its time (docs/VIDEO.md, "What each container keeps").
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import numpy as np

from vidcolour.colour import YCbCrCoding
from vidcolour.errors import VidcolourError
from vidcolour.video.codecs import (
    CODECS,
    CONTAINER_CODECS,
    CONTAINERS,
    DEFAULT_CODEC,
    Codec,
    container_for,
    default_codec,
)
from vidcolour.video.orientation import (
    IDENTITY,
    Matrix,
    Orientation,
    display_matrix,
    orientation_of,
)
from vidcolour.video.planes import RANGE_JPEG, RANGE_MPEG, Layout, coding_of, plane_array
from vidcolour.video.source import Source

# The codec registry's names are re-exported: callers of the encoder take them from here.
__all__ = [
    "CODECS",
    "CONTAINERS",
    "CONTAINER_CODECS",
    "DEFAULT_CODEC",
    "PROVENANCE_KEY",
    "Codec",
    "Plan",
    "Sink",
    "container_for",
    "default_codec",
    "output_format",
    "plan_output",
    "read_provenance",
    "with_provenance",
]

_MP4_LIKE = ("mp4", "mov")
# The provenance tag's key in each container's own metadata. AVI's INFO list holds only its
# fixed fields (and Lavf writes its own name into ISFT, "software"), so there it is a line of
# the comment (ICMT); the others store any key.
PROVENANCE_KEY = "vidcolour"
_PROVENANCE_KEYS = {"avi": "comment"}
# Codecs whose bitstream carries no colour tags, in containers that have no field for them.
_NO_COLOUR_TAGS = {("avi", "ffv1"), ("avi", "mpeg4")}
# Where the pixel aspect ratio is lost: these muxers read it from the stream itself, which
# PyAV cannot set, and these codecs do not carry it in their bitstream as x264, x265 and MPEG-4
# do (measured: tests/test_video.py).
_NO_PIXEL_ASPECT = {("matroska", "ffv1"), ("avi", "ffv1"), ("matroska", "prores_ks")}
_SPC_UNSPECIFIED = 2  # AVColorSpace
_SPC_OF_MATRIX = {"bt709": 1, "bt601": 6, "bt2020": 9}  # bt601 as smpte170m: the same matrix
# Per-stream tags that describe the old encoding, not the content.
_STALE_TAGS = {"encoder", "duration", "bps", "number_of_frames", "number_of_bytes", "vendor_id"}
_INTERLACED = {2, 3, 4, 5}  # AVFieldOrder tt, bb, tb, bt
# Codecs a container reports as supported that its muxer still refuses to copy in (FFmpeg's mp4
# muxer takes PCM only from its own ipcm path, not as a stream copy; its mov muxer takes FLAC
# and Opus only in MP4 mode).
_NOT_COPIED = {"mp4": ("pcm_",), "mov": ("flac", "opus")}
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 6: "5.1", 8: "7.1"}


@dataclass(frozen=True)
class Plan:
    """How frames of the input become frames of the output."""

    source: Layout
    target: Layout
    source_coding: YCbCrCoding
    target_coding: YCbCrCoding
    fields: bool  # colourise the two fields of each frame separately
    # The output's AVColorSpace tag: the input's, or where that is unspecified, the matrix the
    # new chroma is computed in. Tagging it also lets x264 store the range in the bitstream,
    # which it leaves out for limited range with no other colour tag (and MOV and AVI have no
    # field of their own for the range).
    colorspace: int
    # The first frame's display matrix, read once when it is decoded: PyAV's side data of a
    # frame kept for the whole film (a segmented run's join reads it last) is not safe to read
    # again late (an intermittent segfault in PyAV 18.1).
    display_matrix: Matrix | None

    @property
    def same_format(self) -> bool:
        return self.source.pix_fmt == self.target.pix_fmt


def _with_depth(pix_fmt: str, bits: int) -> str:
    base = pix_fmt.removesuffix("le").rstrip("0123456789")
    return base if bits == 8 else f"{base}{bits}le"


def output_format(source: Layout, codec: Codec) -> str:
    """The output pixel format: the input's whenever the encoder takes it, so that no plane
    needs converting; otherwise the nearest one it does take."""
    supported = {f.name for f in av.Codec(codec.encoder, "w").video_formats or []}
    bits = codec.depth or source.bits
    fmt = source.pix_fmt.replace("yuvj", "yuv")  # full range is a tag, not a format
    if source.gray:
        fmt = "yuv420p"
    fmt = _with_depth(fmt, bits)
    odd = source.width % 2 or source.height % 2
    if codec.encoder in ("libx264", "libx265") and odd and fmt.startswith(("yuv420p", "yuv422p")):
        fmt = _with_depth("yuv444p", bits)  # x264/x265 need even sides for subsampled chroma
    if fmt not in supported:
        for fallback in ("yuv422p", "yuv444p", "yuv420p"):
            candidate = _with_depth(fallback, min(bits, 10))
            if candidate in supported:
                return candidate
        raise VidcolourError(f"{codec.encoder} cannot encode {source.pix_fmt} video")
    if source.pix_fmt.startswith("yuvj") and source.pix_fmt in supported and bits == 8:
        return source.pix_fmt
    return fmt


def plan_output(first: av.VideoFrame, codec: Codec, field_order: int) -> Plan:
    """The plan for a stream whose first decoded frame is ``first``."""
    source = Layout(first.format.name, first.width, first.height)
    source_coding = coding_of(first, source)
    target = Layout(output_format(source, codec), source.width, source.height)
    target_coding = YCbCrCoding(source_coding.matrix, source_coding.full_range, target.bits)
    chroma_h = target.chroma_size[0]
    fields = field_order in _INTERLACED and source.height % 2 == 0 and chroma_h % 2 == 0
    colorspace = first.colorspace
    if colorspace == _SPC_UNSPECIFIED:
        colorspace = _SPC_OF_MATRIX[source_coding.matrix]
    return Plan(
        source, target, source_coding, target_coding, fields, colorspace, display_matrix(first)
    )


class Sink:
    """An output file being written. ``notify`` receives one-line notices for the user."""

    def __init__(
        self,
        path: Path,
        container_format: str,
        source: Source,
        first: av.VideoFrame,
        plan: Plan,
        codec: Codec,
        *,
        crf: int | None,
        preset: str | None,
        tune: str | None,
        tag: str,
        notify: Callable[[str], None],
        compare: bool = False,
        video_only: bool = False,
        template: av.video.stream.VideoStream | None = None,
    ) -> None:
        """``video_only``: the colourised video alone (a segment of a long film,
        video/segments.py); ``template``: a segment's video stream, whose packets are then
        copied in (``copy``) instead of frames encoded."""
        self.plan = plan
        self.compare = compare  # the input (grey) left of the colour, for review
        self.copying = template is not None
        options = {"movflags": "+use_metadata_tags"} if container_format in _MP4_LIKE else {}
        self.container = av.open(str(path), "w", format=container_format, options=options)
        try:
            self.slots = (
                _FrameSlots.for_avi(source, first, notify) if container_format == "avi" else None
            )
            if template is None:
                self.video = self._add_video(source, first, codec, crf, preset, tune)
            else:
                self.video = self._copied_video(template, source)
            self.carried = {} if video_only else self._add_carried(source, notify)
            if video_only:
                return
            for other in _left_out(source):
                notify(f"{other} is left out: vidcolour keeps one video, its sound and subtitles")
            tags = _content_tags(source.container.metadata)
            self.container.metadata.update(with_provenance(tags, container_format, tag))
            # a stretch's chapters would point at the wrong times: it is a preview, without them
            chapters = source.container.chapters() if source.stretch is None else []
            if chapters:
                if container_format == "avi":
                    notify(
                        f"avi cannot hold chapters: the {len(chapters)} chapters are left out; "
                        "use .mkv, .mp4 or .mov to keep them"
                    )
                else:
                    self.container.set_chapters(chapters)
            sar = source.stream.sample_aspect_ratio
            if sar and sar != 1 and (container_format, codec.encoder) in _NO_PIXEL_ASPECT:
                notify(
                    f"{container_format} cannot record the pixel aspect ratio {sar} with "
                    f"{codec.encoder} video here: players will show square pixels; h264 or "
                    "h265, or prores in .mov, keep it"
                )
            if (container_format, codec.encoder) in _NO_COLOUR_TAGS:
                coding = plan.target_coding
                notify(
                    f"{container_format} cannot hold the colour tags of {codec.encoder} video "
                    f"({'full' if coding.full_range else 'limited'} range, {coding.matrix} "
                    "matrix, primaries, transfer): players will guess them; use .mkv to keep them"
                )
        except BaseException:
            self.container.close()
            raise

    def _add_video(
        self,
        source: Source,
        first: av.VideoFrame,
        codec: Codec,
        crf: int | None,
        preset: str | None,
        tune: str | None,
    ) -> av.video.stream.VideoStream:
        src = source.stream
        options = dict(codec.options)
        if codec.crf is not None:
            crf, preset, tune = codec.resolve(crf, preset, tune)
            options["crf"] = str(crf)
            options["preset"] = str(preset)
            if tune:
                options["tune"] = tune
        rate = self.slots.rate if self.slots is not None else source.rate
        stream = cast(
            av.video.stream.VideoStream,
            self.container.add_stream(codec.encoder, rate=rate, options=options),
        )
        stream.width, stream.height = self.plan.target.width, self.plan.target.height
        if self.compare and _shown_turn(self.plan).transpose:
            stream.height *= 2
        elif self.compare:
            stream.width *= 2
        stream.pix_fmt = self.plan.target.pix_fmt
        if self.slots is not None:
            stream.time_base = 1 / self.slots.rate
        else:
            stream.time_base = src.time_base or Fraction(1, 1000)
        cc = stream.codec_context
        cc.time_base = stream.time_base
        if src.sample_aspect_ratio:
            stream.sample_aspect_ratio = src.sample_aspect_ratio
        field_order = src.codec_context.field_order
        cc.field_order = field_order
        if field_order in _INTERLACED:
            cc.flags |= av.codec.context.Flags.interlaced_dct | av.codec.context.Flags.interlaced_me
        cc.color_range = RANGE_JPEG if self.plan.target_coding.full_range else RANGE_MPEG
        cc.colorspace, cc.color_primaries, cc.color_trc = (
            self.plan.colorspace,
            first.color_primaries,
            first.color_trc,
        )
        matrix = self.plan.display_matrix
        if matrix is not None and matrix != IDENTITY:  # whole: a rotation alone loses mirroring
            stream.set_display_matrix(matrix)
        stream.metadata.update(_content_tags(src.metadata))
        return stream

    def _copied_video(
        self, template: av.video.stream.VideoStream, source: Source
    ) -> av.video.stream.VideoStream:
        stream = cast(
            av.video.stream.VideoStream, self.container.add_stream_from_template(template)
        )
        stream.time_base = template.time_base
        if source.rate:  # a timecode tag makes the MOV muxer write a track that needs the rate
            stream.codec_context.framerate = source.rate
        if source.stream.sample_aspect_ratio:  # a segment's .mkv cannot hold it (below)
            stream.sample_aspect_ratio = source.stream.sample_aspect_ratio
        matrix = self.plan.display_matrix
        if matrix is not None and matrix != IDENTITY:
            stream.set_display_matrix(matrix)
        stream.metadata.update(_content_tags(source.stream.metadata))
        return stream

    def _add_carried(self, source: Source, notify: Callable[[str], None]) -> dict[int, _Carried]:
        carried: dict[int, _Carried] = {}
        supported = self.container.supported_codecs
        for s in source.other_streams():
            name = s.codec_context.name if s.codec_context else "unknown"
            if name in supported and not name.startswith(
                _NOT_COPIED.get(self.container.format.name, ())
            ):
                out = self.container.add_stream_from_template(s)
                out.metadata.update(_content_tags(s.metadata))
                carried[s.index] = _Carried(s, out, reencode=False)
            elif s.type == "audio":
                encoder = self.container.default_audio_codec
                audio = cast(av.audio.codeccontext.AudioCodecContext, s.codec_context)
                layout = audio.layout
                if layout.name.endswith("channels"):  # no channel order: encoders want one
                    layout = av.AudioLayout(_DEFAULT_LAYOUTS.get(len(layout.channels), "stereo"))
                out = cast(
                    av.audio.stream.AudioStream,
                    self.container.add_stream(encoder, rate=audio.sample_rate, layout=layout),
                )
                formats = av.Codec(encoder, "w").audio_formats or []
                if formats:  # the encoder's preferred sample format; frames are resampled to it
                    out.codec_context.format = formats[0]
                out.metadata.update(_content_tags(s.metadata))
                carried[s.index] = _Carried(s, out, reencode=True)
                notify(
                    f"audio stream {s.index} ({name}) cannot go into this container "
                    f"({self.container.format.name}); re-encoded as {encoder}"
                )
            else:
                notify(
                    f"{s.type} stream {s.index} ({name}) cannot go into this container "
                    f"({self.container.format.name}) and is left out; use .mkv to keep it"
                )
        languages = [
            f"{s.index}: {s.metadata['language']}"
            for s in source.other_streams()
            if s.index in carried and s.metadata.get("language", "und") != "und"
        ]
        if languages and self.container.format.name == "avi":  # RIFF has no field for them
            notify(
                f"avi cannot hold the streams' languages ({', '.join(languages)}): they are "
                "left out; use .mkv, .mp4 or .mov to keep them"
            )
        return carried

    # --------------------------------------------------------------------------------- writing
    def write(self, frame: av.VideoFrame, luma: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> None:
        """Encode ``frame`` with new chroma. luma: its (H, W) Y' codes; cb, cr: (h, w) codes."""
        plan = self.plan
        target = plan.target
        if self.compare:
            out = side_by_side(frame, luma, cb, cr, plan)
            if self.slots is not None:
                out.pts, out.time_base = self.slots.place(frame), 1 / self.slots.rate
            self._mux(self.video.encode(out))
            return
        if plan.same_format:
            frame.make_writable()  # the decoder may still reference its buffers
            out = frame
        else:  # keeps timing, flags and tags; every plane is then written below
            out = frame.reformat(format=target.pix_fmt)
            shift = target.bits - plan.source.bits
            plane_array(out.planes[0], target.height, target.width, target.dtype)[:] = (
                luma.astype(target.dtype) << shift
            )
            out.color_range = RANGE_JPEG if plan.target_coding.full_range else RANGE_MPEG
        h, w = target.chroma_size
        plane_array(out.planes[1], h, w, target.dtype)[:] = cb
        plane_array(out.planes[2], h, w, target.dtype)[:] = cr
        out.colorspace = plan.colorspace  # encoders that tag each frame read it here
        if self.slots is not None:
            out.pts, out.time_base = self.slots.place(frame), 1 / self.slots.rate
        self._mux(self.video.encode(out))

    def copy(self, packet: av.Packet) -> None:
        """Mux a packet of a segment's video stream (``template``) as this file's video."""
        packet.stream = self.video
        self.container.mux(packet)

    def carry(self, packet: av.Packet) -> None:
        """Copy (or, where the container needs it, re-encode) another stream's packet."""
        carried = self.carried.get(packet.stream.index)
        if carried is None:
            return
        if not carried.reencode:
            if self.slots is not None and _mostly_before_zero(packet):
                # AVI plays sound from the picture's start: the packet nearer it starts it. A
                # packet before it (a stretch's lead-in, AAC's priming, which MP4's edit list
                # hides) would make the muxer delay every stream, the picture a slot late.
                return
            packet.stream = carried.output
            self.container.mux(packet)
            return
        for frame in carried.input.decode(packet):
            self._mux(carried.output.encode(frame))

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self.container.mux(packet)

    def close(self) -> None:
        """Flush every encoder and finish the file."""
        if self.slots is not None:
            self.slots.report()
        if not self.copying:
            self._mux(self.video.encode(None))
        for carried in self.carried.values():
            if carried.reencode:  # the decoder's delayed frames, then the encoder's
                for frame in carried.input.decode(None):
                    self._mux(carried.output.encode(frame))
                self._mux(carried.output.encode(None))
        self.container.close()

    def abort(self) -> None:
        with contextlib.suppress(av.FFmpegError, OSError):
            self.container.close()


def side_by_side(
    frame: av.VideoFrame, luma: np.ndarray, cb: np.ndarray, cr: np.ndarray, plan: Plan
) -> av.VideoFrame:
    """Two pictures side by side as displayed: ``frame`` as it came in (its luma, neutral
    chroma) on the left, with the new chroma on the right; same times. A picture displayed
    turned a quarter (a phone's) gets its halves one above the other as coded, which shows them
    side by side; a mirrored one gets them swapped as coded. luma: (H, W) Y' codes of the
    input's depth; cb, cr: (h, w) codes at the output's. With an odd side and subsampled chroma
    the second half's chroma sits half a sample off its luma: a copy to look at, not a master."""
    target = plan.target
    turn = _shown_turn(plan)
    rows = turn.transpose  # coded rows are displayed columns: halves one above the other
    height, width = (2 * target.height, target.width) if rows else (target.height, 2 * target.width)
    out = av.VideoFrame(width, height, target.pix_fmt)
    out.pts, out.time_base = frame.pts, frame.time_base
    y = luma.astype(target.dtype) << (target.bits - plan.source.bits)
    halves = np.concatenate([y, y], 0 if rows else 1)
    plane_array(out.planes[0], height, width, target.dtype)[:] = halves
    h, w = target.chroma_size
    neutral = 2 ** (target.bits - 1)
    for i, chroma in ((1, cb), (2, cr)):
        both = out.planes[i]  # chroma samples of both halves
        plane = plane_array(both, both.height, both.width, target.dtype)
        plane[:] = neutral
        if turn.flip_cols:  # the input shown on the left is the second half as coded
            colour = plane[:h] if rows else plane[:, :w]
        else:
            colour = plane[-h:] if rows else plane[:, -w:]
        colour[:] = chroma
    out.color_range = RANGE_JPEG if plan.target_coding.full_range else RANGE_MPEG
    out.colorspace = plan.colorspace
    return out


def _shown_turn(plan: Plan) -> Orientation:
    """How the output's pictures are turned when shown (none for a matrix that is not a
    multiple of 90 degrees): where ``--compare`` puts its halves."""
    return orientation_of(plan.display_matrix) or Orientation()


@dataclass
class _FrameSlots:
    """AVI's timing. AVI stores a frame rate, not timestamps: a frame's time is its index at
    that rate (the muxer fills skipped indices with empty chunks, which players show as the
    previous picture held), and the picture and every sound track start together at 0. So each
    frame takes the slot nearest its time, counted from the first frame."""

    rate: Fraction
    origin: float  # seconds: the input time of slot 0, the first frame's
    notify: Callable[[str], None]
    last: int = -1
    placed: int = 0
    moved: int = 0  # frames more than half a slot away from their time
    worst: float = 0.0  # seconds: the largest such distance

    @classmethod
    def for_avi(
        cls, source: Source, first: av.VideoFrame, notify: Callable[[str], None]
    ) -> _FrameSlots:
        stream = source.stream
        # guessed_rate is FFmpeg's estimate of the coarsest rate on whose ticks every frame
        # lies, so variable frame timing fits too; the average rate of VFR video does not.
        rate = stream.guessed_rate or stream.average_rate
        if not rate:
            raise VidcolourError(
                f"{source.path}: its frame rate is unknown, and AVI needs one (use .mkv)"
            )
        origin = first.time if first.time is not None else 0.0
        for s in source.other_streams():
            if s.type != "audio" or s.start_time is None or not s.time_base:
                continue
            offset = float(s.start_time * s.time_base) - origin
            if abs(offset) > 0.5 / rate:  # more than the half frame AVI rounds to anyway
                notify(
                    f"avi starts picture and sound together: audio stream {s.index} starts "
                    f"{abs(offset) * 1000:.0f} ms {'after' if offset > 0 else 'before'} the "
                    "picture in the input and will not here; use .mkv or .mp4 to keep that"
                )
        return cls(Fraction(rate), origin, notify)

    def place(self, frame: av.VideoFrame) -> int:
        """The slot of ``frame``: the one nearest its time, after the previous frame's."""
        self.placed += 1
        if frame.time is None:
            self.last += 1
            return self.last
        exact = (frame.time - self.origin) * float(self.rate)
        slot = max(math.floor(exact + 0.5), self.last + 1)
        if abs(slot - exact) > 0.5 + 1e-6:
            self.moved += 1
            self.worst = max(self.worst, abs(slot - exact) / float(self.rate))
        self.last = slot
        return slot

    def report(self) -> None:
        if self.moved:
            self.notify(
                f"avi stores only a frame rate ({float(self.rate):g} fps): {self.moved} of "
                f"{self.placed} frames are more than half a frame off their times (by up to "
                f"{self.worst * 1000:.0f} ms); use .mkv or .mp4 to keep variable frame timing"
            )


def _mostly_before_zero(packet: av.Packet) -> bool:
    """A sound packet with more than half of it before time 0 (a stretch's start)."""
    if packet.pts is None or packet.pts >= 0 or not packet.duration:
        return False
    return -packet.pts > packet.duration / 2


@dataclass
class _Carried:
    input: Any  # audio or subtitle streams
    output: Any
    reencode: bool


def _left_out(source: Source) -> list[str]:
    """The input's streams no output keeps: more video, attachments (fonts), data (timecode).
    An MP4's or MOV's chapter track is none of them: FFmpeg shows its text as a data stream it
    marks discarded, and the chapters travel as the container's own (or have their notice)."""
    kept = {source.stream.index, *(s.index for s in source.other_streams())}
    left = []
    for s in source.container.streams:
        if s.index in kept or (s.type == "data" and s.discard == av.stream.Discard.all):
            continue
        name = s.metadata.get("filename") or (s.codec_context.name if s.codec_context else None)
        left.append(f"{s.type} stream {s.index}" + (f" ({name})" if name else ""))
    return left


def _content_tags(tags: dict[str, str]) -> dict[str, str]:
    """Metadata about the content, without tags describing the old file's encoding."""
    return {
        k: v
        for k, v in tags.items()
        if k.lower() not in _STALE_TAGS
        and not k.startswith("_STATISTICS")
        and k not in ("major_brand", "minor_version", "compatible_brands")
    }


def with_provenance(tags: dict[str, str], container_format: str, tag: str) -> dict[str, str]:
    """``tags`` with the provenance tag ``tag`` under the key the container stores; an earlier
    vidcolour tag (the input may be an earlier output) is replaced."""
    key = _PROVENANCE_KEYS.get(container_format, PROVENANCE_KEY)
    out = {k: v for k, v in tags.items() if k.lower() != PROVENANCE_KEY}
    if key == "comment":  # the input's comment is kept, the tag is a line of its own
        comments = [out.pop(k) for k in list(out) if k.lower() == "comment"]
        lines = [
            line
            for line in "\n".join(comments).splitlines()
            if line and not line.startswith(f"{PROVENANCE_KEY} ")
        ]
        out["comment"] = "\n".join([*lines, tag])
    else:
        out[key] = tag
    return out


def read_provenance(tags: dict[str, str]) -> str | None:
    """The provenance tag in a container's metadata (from any container vidcolour writes)."""
    lowered = {k.lower(): v for k, v in tags.items()}
    if PROVENANCE_KEY in lowered:
        return lowered[PROVENANCE_KEY]
    for line in lowered.get("comment", "").splitlines():
        if line.startswith(f"{PROVENANCE_KEY} "):
            return line
    return None
