"""Synthetic test clips, made in code: moving grey shapes with optional sound, chapters and
variable frame timing. Used by the tests and by ``vidcolour bench``."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import av
import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from av.container.core import Chapter


def grey_picture(index: int, height: int, width: int) -> np.ndarray:
    """(H, W) uint8: a gradient with a bright disc that moves a little every frame."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    picture = 40 + 120 * xx / max(width - 1, 1) + 40 * yy / max(height - 1, 1)
    cy, cx = height / 2, (index * 7) % max(width, 1)
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 < (min(height, width) / 5) ** 2
    picture[disc] = 230
    noise = np.random.default_rng(index).integers(0, 6, size=(height, width))
    return np.clip(picture + noise, 0, 255).astype(np.uint8)


def write_clip(
    path: Path,
    *,
    frames: int = 12,
    size: tuple[int, int] = (96, 128),  # (height, width)
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    rate: int = 25,
    pts: Sequence[int] | None = None,  # frame timestamps in ``time_base`` units (VFR)
    time_base: Fraction | None = None,
    audio: str | None = None,  # an audio encoder, e.g. "flac", "aac", "pcm_s16le"
    chirp: bool = False,  # sound: a rising tone (never repeating, so a shift shows) not 440 Hz
    chapters: bool = False,
    field_order: str | None = None,  # "tt" or "bb": interlaced coding (mpeg2video)
    options: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
    rotation: int = 0,  # display rotation, degrees counter-clockwise
) -> Path:
    """Write a greyscale clip (chroma neutral) and return its path."""
    height, width = size
    time_base = time_base or Fraction(1, rate)
    stamps = list(pts) if pts is not None else [round(i / rate / time_base) for i in range(frames)]
    out = av.open(str(path), "w")
    opts = dict(options or {})
    if field_order is not None:
        opts["top"] = "1" if field_order == "tt" else "0"
    video = cast(av.video.stream.VideoStream, out.add_stream(codec, rate=rate, options=opts))
    video.width, video.height, video.pix_fmt = width, height, pix_fmt
    video.time_base = time_base
    video.codec_context.time_base = time_base
    if field_order is not None:
        video.codec_context.field_order = 2 if field_order == "tt" else 3
        video.codec_context.flags |= (
            av.codec.context.Flags.interlaced_dct | av.codec.context.Flags.interlaced_me
        )
    if rotation:
        video.set_display_rotation(rotation)
    sound = None
    if audio is not None:
        sound = cast(
            av.audio.stream.AudioStream, out.add_stream(audio, rate=48000, layout="stereo")
        )
    out.metadata.update(metadata or {})
    if chapters:
        out.set_chapters(_two_chapters(stamps, time_base))
    tone = _Tone(out, sound, chirp) if sound is not None else None
    for i, stamp in enumerate(stamps):
        grey = grey_picture(i, height, width)
        if pix_fmt.startswith("gray"):
            frame = av.VideoFrame.from_ndarray(grey, format="gray").reformat(format=pix_fmt)
        else:
            rgb = np.repeat(grey[..., None], 3, axis=2)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            _neutral_chroma(frame)  # exactly neutral: a truly grey clip
        frame.pts, frame.time_base = stamp, time_base
        for packet in video.encode(frame):
            out.mux(packet)
        if tone is not None:  # sound up to this frame's end, interleaved as muxers expect
            tone.until(float(stamp * time_base) + 1 / rate)
    for packet in video.encode(None):
        out.mux(packet)
    if tone is not None:
        tone.finish()
    out.close()
    return path


def write_film(
    path: Path,
    shots: Sequence[int],
    *,
    size: tuple[int, int] = (48, 64),  # (height, width)
    codec: str = "libx264",
    rate: int = 25,
    audio: str | None = "aac",
) -> list[int]:
    """A greyscale film of ``shots`` (frames in each), cut hard from one to the next, with a
    sound track: each shot moves ``grey_picture`` turned another way (as it is, inverted,
    upside down, mirrored: consecutive shots' gradients differ along the picture's width, its
    strong axis), so the shot detector finds every cut. Made for long-film tests (thousands
    of tiny frames). Returns the frames that start a shot."""
    height, width = size
    out = av.open(str(path), "w")
    video = cast(av.video.stream.VideoStream, out.add_stream(codec, rate=rate))
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    sound = None
    if audio is not None:
        sound = cast(
            av.audio.stream.AudioStream, out.add_stream(audio, rate=48000, layout="stereo")
        )
    tone = _Tone(out, sound) if sound is not None else None
    cuts, index = [], 0
    for shot, length in enumerate(shots):
        if shot:
            cuts.append(index)
        for _ in range(length):
            grey = grey_picture(index, height, width)
            grey = (grey, 255 - grey, grey[::-1], grey[:, ::-1])[shot % 4]
            rgb = np.repeat(np.ascontiguousarray(grey)[..., None], 3, axis=2)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            _neutral_chroma(frame)
            frame.pts, frame.time_base = index, Fraction(1, rate)
            for packet in video.encode(frame):
                out.mux(packet)
            if tone is not None:
                tone.until((index + 1) / rate)
            index += 1
    for packet in video.encode(None):
        out.mux(packet)
    if tone is not None:
        tone.finish()
    out.close()
    return cuts


def write_scenes(
    path: Path,
    pictures: Sequence[np.ndarray],
    *,
    frames_per_shot: int = 24,
    size: tuple[int, int] = (144, 256),  # (height, width)
    codec: str = "ffv1",
    rate: int = 25,
    grain: float = 0.0,
    exposure_flicker: float = 0.0,
    seed: int = 0,
) -> list[int]:
    """A colour clip of moving shots with hard cuts: shot k pans and zooms slowly across
    ``pictures[k]`` ((H, W, 3) uint8 RGB, larger than ``size``). Old film's two frame-to-frame
    faults can be added: grain (Gaussian, standard deviation in 8-bit codes, new every frame)
    and exposure flicker (a gain drawn every frame, standard deviation ``exposure_flicker``).
    Returns the frames that start a shot after the first."""
    height, width = size
    rng = np.random.default_rng(seed)
    out = av.open(str(path), "w")
    video = cast(av.video.stream.VideoStream, out.add_stream(codec, rate=rate))
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    cuts, index = [], 0
    for shot, picture in enumerate(pictures):
        if shot:
            cuts.append(index)
        ph, pw = picture.shape[:2]
        for t in range(frames_per_shot):
            zoom = 1.0 - 0.2 * t / frames_per_shot  # a slow push in
            ch, cw = (
                int(min(ph, pw * height / width) * zoom),
                int(min(pw, ph * width / height) * zoom),
            )
            top = (ph - ch) // 2
            left = int((pw - cw) * t / max(frames_per_shot - 1, 1))  # a pan left to right
            crop = Image.fromarray(picture[top : top + ch, left : left + cw])
            rgb = np.asarray(crop.resize((width, height), Image.Resampling.BILINEAR), np.float32)
            rgb = rgb * np.float32(1 + rng.normal(0, exposure_flicker))
            if grain:
                rgb = rgb + rng.normal(0, grain, (height, width, 1)).astype(np.float32)
            frame = av.VideoFrame.from_ndarray(np.clip(rgb, 0, 255).astype(np.uint8), "rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts = index
            for packet in video.encode(frame):
                out.mux(packet)
            index += 1
    for packet in video.encode(None):
        out.mux(packet)
    out.close()
    return cuts


def grey_copy(
    src: Path,
    dst: Path,
    codec: str = "ffv1",
    options: dict[str, str] | None = None,
    frames: range | None = None,
) -> Path:
    """A greyscale copy of a colour video: its luma, with neutral 4:2:0 chroma. ``frames``: which
    frames to keep (default all); the copy's timestamps start at 0."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        video = cast(
            av.video.stream.VideoStream,
            out.add_stream(codec, rate=stream.average_rate, options=options or {}),
        )
        video.width, video.height = stream.codec_context.width, stream.codec_context.height
        video.pix_fmt = "yuv420p"
        video.time_base = video.codec_context.time_base = stream.time_base or Fraction(1, 90000)
        start = None
        for index, frame in enumerate(inp.decode(stream)):
            if frames is not None and index not in frames:
                if index >= frames.stop:
                    break
                continue
            pts = frame.pts or 0
            start = pts if start is None else start
            frame = frame.reformat(format="yuv420p")
            frame.pts = pts - start
            _neutral_chroma(frame)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    return dst


def _two_chapters(stamps: list[int], time_base: Fraction) -> list[Chapter]:
    """Chapters "One" and "Two", split at the middle frame."""
    half = stamps[len(stamps) // 2]
    return [
        {"id": 1, "start": 0, "end": half, "time_base": time_base, "metadata": {"title": "One"}},
        {
            "id": 2,
            "start": half,
            "end": stamps[-1],
            "time_base": time_base,
            "metadata": {"title": "Two"},
        },
    ]


def _neutral_chroma(frame: av.VideoFrame) -> None:
    fmt = frame.format
    bits = fmt.components[1].bits
    dtype = np.uint8 if bits == 8 else np.dtype("<u2")
    for plane in frame.planes[1:3]:
        np.frombuffer(cast(Any, plane), dtype=dtype)[:] = 2 ** (bits - 1)


class _Tone:
    """A 440 Hz stereo tone (or a chirp rising 100 Hz a second from 200 Hz), encoded block by
    block as the video advances."""

    RATE, BLOCK = 48000, 1024

    def __init__(
        self,
        out: av.container.OutputContainer,
        stream: av.audio.stream.AudioStream,
        chirp: bool = False,
    ):
        self.out, self.stream, self.written, self.chirp = out, stream, 0, chirp

    def until(self, seconds: float) -> None:
        while self.written < seconds * self.RATE:
            t = (self.written + np.arange(self.BLOCK)) / self.RATE
            phase = 200 * t + 50 * t**2 if self.chirp else 440 * t
            tone = (0.2 * np.sin(2 * np.pi * phase) * 32767).astype(np.int16)
            samples = np.repeat(tone[None], 2, axis=0).T.reshape(1, -1)  # interleaved L R
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = self.RATE, self.written
            frame.time_base = Fraction(1, self.RATE)
            self._mux(self.stream.encode(frame))
            self.written += self.BLOCK

    def finish(self) -> None:
        self._mux(self.stream.encode(None))

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self.out.mux(packet)


def frame_rgb(path: Path, index: int) -> np.ndarray:
    """Frame ``index`` (display order) of a video as (H, W, 3) uint8 RGB: for figures."""
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="rgb24")
    raise ValueError(f"{path} has fewer than {index + 1} frames")
