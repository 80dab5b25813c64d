"""Shot boundaries (cuts) from the luma alone, streaming, with a look-ahead of ``LOOK_AHEAD``
frames.

Each frame is reduced to a signature: its luma at 64 px wide, normalised to zero mean and unit
contrast, so that a fade (a gain) or a flash (a gain and an offset) changes it little while new
content changes it wholly. d(a, b) is the mean absolute difference of two signatures: about 0.05
between frames of a still shot, 0.2-0.5 in fast motion, 0.3-0.9 across a cut.

Frame t starts a new shot when all of these hold:

- d(t) = d(reference, t) > ``MIN_JUMP``, where the reference is the last frame that was not a
  flash;
- it is a spike: d(t) > ``RATIO`` x the median d of the shot so far (its last 8 frames), and
  > ``RATIO`` x the median d of the next ``LOOK_AHEAD`` frames (fast motion is a run of high d,
  a cut one high d); or, for a cut between similar pictures, d(t) > ``SMALL_JUMP`` and
  > ``STRONG_RATIO`` x both;
- it is not a flash: no frame in the look-ahead comes back near the reference;
- hysteresis: after a cut, another is possible only once a frame's spike ratio has fallen
  below ``REARM_RATIO`` again, so a burst of change (a dissolve, a whip pan) gives at most one.

The thresholds were set on bikes.mp4 (`vidcolour shots` finds its five cuts and nothing in its
fast motion) and on cuts between photographs; tests/test_stabilise.py plants cuts, flashes and
fades.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

from vidcolour.video.source import Chunk

SIGNATURE_WIDTH = 64
LOOK_AHEAD = 3
MIN_JUMP = 0.35
RATIO = 2.5
# A cut between two similar pictures (a shot and its reverse angle) moves d less; a jump this
# many times its surroundings is one all the same, if d is above SMALL_JUMP.
STRONG_RATIO = 6.0
SMALL_JUMP = 0.15
REARM_RATIO = 1.5
_BASELINE_FRAMES = 8
_FLOOR = 0.02  # d of a perfectly still shot is ~0: ratios against it would explode
# Added to the contrast (8-bit codes): a dim frame of a fade keeps a faint signature, so a
# fade through black changes it gradually (with 4, 5-frame fades gave two false cuts).
_CONTRAST_FLOOR = 16.0


def signature(luma: np.ndarray, bits: int = 8) -> np.ndarray:
    """(H, W) luma codes -> a small float32 picture with zero mean and unit contrast.

    A picture at least 4x the signature's size is first halved by 2x2 means in its own integer
    type (OpenCV's fast path): the same average up to whole codes, about 3x faster on the
    decode thread (1.1 -> 0.3 ms a 576p frame, 1.9 -> 0.6 at 1080p), distances between
    neighbouring frames within 0.0016 of the direct average's, film grain of 8 or 16 codes
    added or not (benchmarks/colour_versions.py --clip --grain)."""
    h, w = luma.shape
    size = (SIGNATURE_WIDTH, max(4, round(h * SIGNATURE_WIDTH / w)))
    if w >= 4 * SIGNATURE_WIDTH and h >= 4 * size[1]:
        luma = cv2.resize(luma, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    small = cv2.resize(luma.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    small *= 2.0 ** (8 - bits)
    return (small - small.mean()) / (small.std() + _CONTRAST_FLOOR)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


@dataclass
class ShotDetector:
    """Feed signatures in display order; get, for each frame in order, whether it starts a new
    shot. Decisions come ``LOOK_AHEAD`` frames late (``flush`` gives the rest at the end)."""

    _pending: deque[np.ndarray] = field(default_factory=deque)
    _reference: np.ndarray | None = None
    _shot: deque[float] = field(default_factory=lambda: deque(maxlen=_BASELINE_FRAMES))
    _armed: bool = True
    frames: int = 0  # decided so far

    def push(self, sig: np.ndarray) -> list[bool]:
        self._pending.append(sig)
        decided = []
        while len(self._pending) > LOOK_AHEAD:
            decided.append(self._decide())
        return decided

    def flush(self) -> list[bool]:
        decided = []
        while self._pending:
            decided.append(self._decide())
        return decided

    @property
    def pending(self) -> int:
        """Frames pushed and not yet decided."""
        return len(self._pending)

    def flush_one(self) -> bool:
        """The decision for the oldest pending frame, at the end of the stream."""
        return self._decide()

    def state(self) -> dict[str, np.ndarray]:
        """What decides the next frame besides the frames themselves: with ``resumed`` and the
        same frames pushed again, a detector decides them as this one does (long films are
        made in segments, video/segments.py). Arrays only, so it is saved without pickle."""
        state = {
            "shot_history": np.array(self._shot, np.float64),
            "shot_armed": np.array(self._armed),
            "shot_frames": np.array(self.frames),
        }
        if self._reference is not None:
            state["shot_reference"] = self._reference
        return state

    @classmethod
    def resumed(cls, state: Mapping[str, np.ndarray]) -> ShotDetector:
        """A detector in ``state`` (from ``state``), with nothing pending."""
        detector = cls(frames=int(state["shot_frames"]))
        detector._reference = state.get("shot_reference")
        detector._shot.extend(float(d) for d in state["shot_history"])
        detector._armed = bool(state["shot_armed"])
        return detector

    def _decide(self) -> bool:
        sig = self._pending[0]
        ahead = list(self._pending)[1:]
        self._pending.popleft()
        self.frames += 1
        if self._reference is None:
            self._reference = sig
            return False  # the first frame starts the first shot; not a cut
        d = distance(self._reference, sig)
        after = [distance(a, b) for a, b in zip([sig, *ahead], ahead, strict=False)]
        before = statistics.median(self._shot) if self._shot else _FLOOR
        later = statistics.median(after) if after else 0.0
        ratio = d / max(before, later, _FLOOR)
        spike = (d > MIN_JUMP and ratio > RATIO) or (d > SMALL_JUMP and ratio > STRONG_RATIO)
        if spike and any(distance(self._reference, a) < d / RATIO for a in ahead):
            return False  # a flash: the picture comes back; the reference stays
        cut = spike and self._armed
        if cut:
            self._shot.clear()
            self._armed = False
        else:
            self._shot.append(d)
            self._armed = self._armed or ratio < REARM_RATIO
        self._reference = sig
        return cut


def cuts_of(signatures: Iterable[np.ndarray]) -> list[int]:
    """Indices of the frames that start a new shot (the first frame is not counted)."""
    detector = ShotDetector()
    flags: list[bool] = []
    for sig in signatures:
        flags += detector.push(sig)
    flags += detector.flush()
    return [i for i, cut in enumerate(flags) if cut]


def mark_cuts(chunks: Iterable[Chunk], bits: int) -> Iterator[Chunk]:
    """The same chunks in the same order, each with ``cuts`` filled in: a chunk is held back
    until the detector's look-ahead has seen enough frames after its last one."""
    detector = ShotDetector()
    held: deque[Chunk] = deque()
    flags: deque[bool] = deque()

    def ready() -> Iterator[Chunk]:
        while held and len(flags) >= len(held[0].frames):
            chunk = held.popleft()
            chunk.cuts = [flags.popleft() for _ in chunk.frames]
            yield chunk

    for chunk in chunks:
        held.append(chunk)
        for luma in chunk.luma if chunk.frames else ():
            flags.extend(detector.push(signature(luma, bits)))
        yield from ready()
    flags.extend(detector.flush())
    yield from ready()
