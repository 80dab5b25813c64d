"""Keyframe-guided colour: frames a colourist painted, carried through their shots.

A keyframe is an image of one frame of the film (``vidcolour frames`` writes them, grey, at the
film's pixel grid, named by frame number) that someone has coloured. It gives chroma only: its
Lab ab is taken, and the output's luma stays the film's own whatever the painter did to the
brightness. Within the keyframe's shot, at the model's working size, upright:

    P(k) = K, C(k) = 1                     K: the keyframe's ab
    P(t) = P(t -+ 1) warped by the flow    forward after k, backward before it
    C(t) = c(t) * C(t -+ 1) warped          c: the stabiliser's trust (stabilise.trust)
    F(t) = M(S(t))                          S: the automatic (stabilised) ab; M: an affine map
                                            of (a, b, L) fitted from S(k) to K on the keyframe
    out(t) = F + C * (P - F)

So the painted colour follows the motion for as long as the flow is trusted, and new or
uncovered content takes the model's colour pulled towards the keyframe's palette. Between two
keyframes of a shot, the forward and backward carries blend by distance and confidence, and the
two maps by distance. A cut ends every carry: colour never crosses one, and shots without a
keyframe get exactly the automatic colour.

Streaming: colour goes back from a keyframe at most ``KEYFRAME_REACH`` frames (the frames
before it are held until it arrives; ``vidcolour run --keyframe-reach``), which bounds memory
whatever the shot's length: earlier frames of a longer shot get the carry from the shot's
previous keyframe, or the automatic colour if there is none.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from vidcolour.colour import grey_to_l, rgb_to_lab
from vidcolour.defaults import KEYFRAME_REACH
from vidcolour.errors import VidcolourError
from vidcolour.fsutil import atomic_path
from vidcolour.video.flow import Flow, flow_maps, remap
from vidcolour.video.orientation import Orientation, display_matrix, orientation_of
from vidcolour.video.planes import Layout, coding_of, luma_view
from vidcolour.video.source import Source
from vidcolour.video.stabilise import trust

SIDECAR_SUFFIX = ".keyframes"  # batch: reel.mp4's keyframes are in reel.mp4.keyframes/
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
MIN_CHROMA = 1.0  # mean |ab| (Lab units) below which a keyframe counts as unpainted (grey)
ASPECT_TOLERANCE = 0.01  # relative difference of width / height still taken as the same aspect
_RIDGE = 1e-3  # of the palette map's least squares, towards the identity, per pixel
_FIT_STEP = 4  # the palette map is fitted on every 4th pixel in each direction
_NUMBER = re.compile(r"\d+")


# --------------------------------------------------------------------------------- the files
def find_keyframes(folder: Path) -> dict[int, Path]:
    """The keyframes in ``folder``: every image file, by the frame number its name starts with
    the first run of digits of (``000120.png``, ``shot3_000120_coat-red.jpg`` is frame 3)."""
    if folder.is_file():
        raise VidcolourError(f"--keyframes takes a folder of pictures, not the file {folder}")
    if not folder.is_dir():
        raise VidcolourError(f"keyframes folder {folder} does not exist")
    found: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        match = _NUMBER.search(path.stem)
        if match is None:
            raise VidcolourError(f"keyframe {path} has no frame number in its name")
        frame = int(match.group())
        if frame in found:
            raise VidcolourError(
                f"two keyframes for frame {frame}: {found[frame].name} and {path.name}"
            )
        found[frame] = path
    if not found:
        raise VidcolourError(f"no keyframe images in {folder} ({', '.join(IMAGE_SUFFIXES)})")
    return found


def sidecar(video: Path) -> Path:
    """Where ``vidcolour batch`` looks for a video's keyframes: ``reel.mp4.keyframes/`` beside
    ``reel.mp4``."""
    return video.with_name(video.name + SIDECAR_SUFFIX)


def keyframes_digest(paths: Mapping[int, Path]) -> str:
    """What the keyframes say, as one hash: their frame numbers and their files' content."""
    digest = hashlib.sha256()
    for frame, path in sorted(paths.items()):
        digest.update(f"{frame}:".encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def read_rgb(path: Path) -> np.ndarray:
    """A keyframe's pixels: (H, W, 3) float32 sRGB in [0, 1] (16-bit images keep their depth)."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                rgb = np.repeat(np.asarray(image, np.float32)[..., None] / 65535, 3, axis=2)
            else:
                rgb = np.asarray(image.convert("RGB"), np.float32) / 255
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise VidcolourError(f"keyframe {path} cannot be read ({exc})") from None
    return rgb


@dataclass(frozen=True)
class Keyframes:
    """Checked keyframes of one video: frame number -> image file, and the picture they fit."""

    paths: Mapping[int, Path]
    size: tuple[int, int]  # (height, width) of the picture as displayed

    def ab(self, frame: int, size: tuple[int, int]) -> np.ndarray:
        """Keyframe ``frame``'s Lab ab at ``size`` (h, w): (2, h, w) float32."""
        rgb = torch.from_numpy(read_rgb(self.paths[frame])).permute(2, 0, 1)[None]
        ab = rgb_to_lab(rgb)[:, 1:]
        ab = F.interpolate(ab, size=size, mode="bilinear", align_corners=False, antialias=True)
        return ab[0].numpy()


def count_frames(video: Path) -> int | None:
    """The video's frame count: the container's, else its video packets counted (demuxing
    only, seconds for a feature film). None if the file cannot be read that way."""
    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            return sum(1 for packet in container.demux(stream) if packet.size)
    except (av.FFmpegError, OSError, IndexError):
        return None


def check_keyframes(
    paths: Mapping[int, Path],
    size: tuple[int, int],
    frames: int | None,
    notify: Callable[[str], None] | None = None,
) -> Keyframes:
    """Refuse keyframes the film cannot use, before any frame is written: past the end (when
    the frame count is known), another aspect ratio, unreadable, or not painted. ``size``:
    the picture's (height, width) as displayed. Same-aspect keyframes of another size are
    scaled, with a notice."""
    height, width = size
    paths = {int(frame): Path(path) for frame, path in paths.items()}  # the API takes str too
    for frame, path in sorted(paths.items()):
        if frames is not None and frame >= frames:
            raise VidcolourError(
                f"keyframe {path.name} is for frame {frame}, past the film's end "
                f"(frames 0-{frames - 1})"
            )
        rgb = read_rgb(path)
        h, w = rgb.shape[:2]
        if abs((w / h) / (width / height) - 1) > ASPECT_TOLERANCE:
            raise VidcolourError(
                f"keyframe {path.name} is {w}x{h}, not the film's aspect ratio ({width}x{height})"
            )
        chroma = float(rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1)[None])[:, 1:].abs().mean())
        if chroma < MIN_CHROMA:
            raise VidcolourError(
                f"keyframe {path.name} is greyscale (mean chroma {chroma:.2f}): paint it first"
            )
        if (h, w) != (height, width) and notify is not None:
            notify(f"keyframe {path.name} is {w}x{h}; scaled to the film's {width}x{height}")
    return Keyframes(dict(paths), size)


def frame_name(frame: int) -> str:
    return f"{frame:06d}.png"


def write_frames(
    video: Path, frames: list[int], folder: Path, overwrite: bool = False
) -> list[Path]:
    """Frames ``frames`` of ``video`` (display order, from 0, as ``vidcolour shots`` counts) as
    full-resolution grey PNGs in ``folder``, upright as displayed: 8-bit, or 16-bit for deeper
    video. Refuses frame numbers past the end before writing anything it can avoid."""
    wanted = sorted(set(frames))
    if not wanted:
        raise VidcolourError("no frames to write: give --at N or --shots")
    if wanted[0] < 0:
        raise VidcolourError(f"frame numbers start at 0, not {wanted[0]}")
    if folder.exists() and not folder.is_dir():
        raise VidcolourError(f"{folder} is a file, not a folder")
    targets = {n: folder / frame_name(n) for n in wanted}
    if not overwrite:
        for path in targets.values():
            if path.exists():
                raise VidcolourError(f"{path} exists (use --overwrite to replace it)")
    count = count_frames(video)
    with Source(video) as source:
        if count is not None and wanted[-1] >= count:
            raise VidcolourError(
                f"{video} has {count} frames (0-{count - 1}); frame {wanted[-1]} is past its end"
            )
        folder.mkdir(parents=True, exist_ok=True)
        written, index = [], 0
        for item in source.frames():
            if not isinstance(item, av.VideoFrame):
                continue
            if index in targets:
                written.append(_write_grey(item, targets[index]))
                if len(written) == len(targets):
                    break
            index += 1
    if len(written) < len(targets):
        raise VidcolourError(
            f"{video} has {index} frames (0-{index - 1}); frame {wanted[-1]} is past its end"
        )
    return written


def _write_grey(frame: av.VideoFrame, path: Path) -> Path:
    layout = Layout(frame.format.name, frame.width, frame.height)
    coding = coding_of(frame, layout)
    unit = coding.luma_to_unit(torch.from_numpy(luma_view(frame, layout).astype(np.float32)))
    orientation = orientation_of(display_matrix(frame)) or Orientation()
    unit = orientation.upright(unit)
    if layout.bits > 8:
        image = Image.fromarray((unit * 65535).round().numpy().astype(np.uint16))
    else:
        image = Image.fromarray((unit * 255).round().numpy().astype(np.uint8), "L")
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


# ----------------------------------------------------------------------------- the palette map
def fit_palette(auto: np.ndarray, painted: np.ndarray, L: np.ndarray) -> np.ndarray:
    """The affine map M with painted ~ M [a, b, L/100, 1] of the automatic (a, b), least squares
    on the keyframe, pulled a little towards the identity where the data says little (a grey
    prediction gives no a, b to fit on). auto, painted: (2, h, w); L: (h, w). Returns (2, 4)."""
    s = (slice(None, None, _FIT_STEP),) * 2
    x = np.stack([auto[0][s], auto[1][s], L[s] / 100, np.ones_like(L[s])]).reshape(4, -1)
    y = painted[:, s[0], s[1]].reshape(2, -1)
    identity = np.eye(2, 4, dtype=np.float64)
    ridge = _RIDGE * x.shape[1] * np.diag([1.0, 1.0, 0.0, 0.0]) + 1e-6 * np.eye(4)
    gram = x.astype(np.float64) @ x.T.astype(np.float64) + ridge
    rhs = y.astype(np.float64) @ x.T.astype(np.float64) + identity @ ridge
    return np.linalg.solve(gram, rhs.T).T.astype(np.float32)


def apply_palette(m: np.ndarray, ab: np.ndarray, L: np.ndarray) -> np.ndarray:
    """``fit_palette``'s map applied: (2, h, w) ab at lightness L (h, w)."""
    return np.einsum("ij,jhw->ihw", m[:, :2], ab) + m[:, 2:3, None] * (L / 100) + m[:, 3:, None]


# ---------------------------------------------------------------------------- the carry
@dataclass
class _Carry:
    """One keyframe's colour carried along the shot: ab P, confidence C, where it started."""

    frame: int
    ab: np.ndarray  # (2, h, w) float32
    confidence: np.ndarray  # (h, w) float32
    palette: np.ndarray  # (2, 4), fit_palette's map


@dataclass
class _Held:
    """A frame waiting for a keyframe ahead in its shot."""

    index: int
    luma: np.ndarray  # (h, w) uint8, working size
    auto: np.ndarray  # (2, h, w) float32, the automatic colour S
    forward: _Carry | None  # the previous keyframe's carry at this frame, if any


@dataclass
class KeyframeGuide:
    """Feed frames in display order (``push``); get each frame's ab once it is known, in order.

    A frame is given back at once when no keyframe can reach it; otherwise it is held until
    the keyframe ahead arrives, a cut shows that it never will, or it falls out of ``reach``.
    ``flush`` gives back the rest at the end of the stream.
    """

    keyframes: Keyframes
    reach: int = KEYFRAME_REACH
    start: int = 0  # the first frame pushed: a film resumed mid-way (video/segments.py)
    _flow: Flow = field(default_factory=Flow)
    _forward: _Carry | None = None
    _held: list[_Held] = field(default_factory=list)
    _previous: np.ndarray | None = None  # the last frame's working-size luma
    _ahead: list[int] = field(default_factory=list)  # keyframe numbers still to come

    def __post_init__(self) -> None:
        if self.reach < 0:
            raise VidcolourError(f"keyframe reach must be at least 0 frames, got {self.reach}")
        self._ahead = sorted((n for n in self.keyframes.paths if n >= self.start), reverse=True)

    def push(
        self, index: int, cut: bool, luma: np.ndarray, auto: np.ndarray
    ) -> list[tuple[int, np.ndarray]]:
        """Frame ``index`` (display order): cut says it starts a shot; luma (h, w) uint8 and the
        automatic ab (2, h, w) float32 at the working size, upright. Returns (index, ab) pairs."""
        out: list[tuple[int, np.ndarray]] = []
        if cut:
            out += self._release(len(self._held))
            self._forward = None
        elif self._forward is not None and self._previous is not None:
            self._forward = self._carry(self._forward, luma, self._previous)
        self._previous = luma
        if self._ahead and self._ahead[-1] == index:
            self._ahead.pop()
            out += self._keyframe(index, luma, auto)
            return out
        self._held.append(_Held(index, luma, auto, self._forward))
        ahead = self._ahead[-1] if self._ahead else None
        keep = 0 if ahead is None else sum(ahead - h.index <= self.reach for h in self._held)
        out += self._release(len(self._held) - keep)
        return out

    def flush(self) -> list[tuple[int, np.ndarray]]:
        return self._release(len(self._held))

    @property
    def missed(self) -> list[int]:
        """Keyframes not reached (at the end: past the stream's last frame)."""
        return self._ahead[::-1]

    # ------------------------------------------------------------------------------ internals
    def _carry(self, carry: _Carry, luma: np.ndarray, source: np.ndarray) -> _Carry:
        """``carry`` moved from the frame whose luma is ``source`` onto the frame ``luma``."""
        maps, inside = flow_maps(self._flow(luma, source))
        a, b, c, before = (
            remap(p, maps) for p in (*carry.ab, carry.confidence, source.astype(np.float32))
        )
        c *= trust(luma.astype(np.float32), before, inside)
        return _Carry(carry.frame, np.stack([a, b]), c, carry.palette)

    def _keyframe(
        self, index: int, luma: np.ndarray, auto: np.ndarray
    ) -> list[tuple[int, np.ndarray]]:
        painted = self.keyframes.ab(index, luma.shape)
        L = _lightness(luma)
        carry = _Carry(
            index, painted, np.ones(luma.shape, np.float32), fit_palette(auto, painted, L)
        )
        # Backward through the held frames, nearest first; they lie in this shot (a cut would
        # have released them).
        backward, source, out = carry, luma, []
        for held in reversed(self._held):
            backward = self._carry(backward, held.luma, source)
            source = held.luma
            out.append((held.index, _blend(held, backward)))
        self._held.clear()
        self._forward = carry
        return [*reversed(out), (index, painted)]

    def _release(self, count: int) -> list[tuple[int, np.ndarray]]:
        """The ``count`` oldest held frames, with what reaches them (the carry from behind)."""
        gone, self._held = self._held[:count], self._held[count:]
        return [(h.index, _blend(h, None)) for h in gone]


def _lightness(luma: np.ndarray) -> np.ndarray:
    return grey_to_l(torch.from_numpy(luma.astype(np.float32) / 255)).numpy()


def _blend(held: _Held, backward: _Carry | None) -> np.ndarray:
    """out = F + C (P - F) for a held frame, from the carries that reach it (none: S)."""
    carries = [c for c in (held.forward, backward) if c is not None]
    if not carries:
        return held.auto
    L = _lightness(held.luma)
    if len(carries) == 1:
        (carry,) = carries
        base = apply_palette(carry.palette, held.auto, L)
        return base + carry.confidence * (carry.ab - base)
    forward, backward = carries
    # Each keyframe counts by how near it is: linear in the frame distance between the two.
    gap = backward.frame - forward.frame
    near_f, near_b = (backward.frame - held.index) / gap, (held.index - forward.frame) / gap
    base = near_f * apply_palette(forward.palette, held.auto, L)
    base += near_b * apply_palette(backward.palette, held.auto, L)
    w_f, w_b = near_f * forward.confidence, near_b * backward.confidence
    total = w_f + w_b
    painted = (w_f * forward.ab + w_b * backward.ab) / np.maximum(total, 1e-6)
    confidence = 1 - (1 - forward.confidence) * (1 - backward.confidence)
    return base + confidence * (painted - base)
