"""The codec registry: each output codec with its encoder settings, the containers that hold
it and its usual extension. Every list of codecs or containers (the CLI's choices, run's
output names, the bench's files) is derived from ``CODECS``; a new codec is one entry here.

Kept apart from the encoder (video/sink.py, which imports PyAV) so that the CLI can list the
codecs without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vidcolour.errors import UsageError

CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".avi": "avi"}


@dataclass(frozen=True)
class Codec:
    encoder: str
    options: dict[str, str] = field(default_factory=dict)
    crf: int | None = None  # default constant rate factor; None: the codec has none
    preset: str | None = None
    tune: str | None = None
    depth: int | None = None  # forces this bit depth (ProRes is 10-bit)
    # The containers (extensions) that hold it, as FFmpeg muxes them and common players play
    # them; the first is its usual one, for an output named after the codec.
    containers: tuple[str, ...] = (".mkv",)

    @property
    def extension(self) -> str:
        return self.containers[0]

    def resolve(
        self, crf: int | None, preset: str | None, tune: str | None
    ) -> tuple[int | None, str | None, str | None]:
        """The crf, preset and tune the encoder gets for these asked-for ones (None: the codec's
        default; tune "none": no tune). All None for a codec without them."""
        if self.crf is None:
            return None, None, None
        tune = self.tune if tune is None else tune
        return (
            self.crf if crf is None else crf,
            preset or self.preset or "medium",
            tune if tune and tune != "none" else None,
        )


CODECS = {
    # Film scans are grainy: x264's and x265's default psychovisual tuning smooths grain away,
    # and tune=grain keeps it (on bikes.mp4: +1.8 dB luma PSNR for +19% size, docs/VIDEO.md).
    "h264": Codec(
        "libx264", crf=18, preset="veryfast", tune="grain", containers=(".mp4", ".mkv", ".mov")
    ),
    "h265": Codec(
        "libx265",
        {"x265-params": "log-level=error"},
        crf=20,
        preset="fast",
        tune="grain",
        containers=(".mp4", ".mkv", ".mov"),
    ),
    "ffv1": Codec("ffv1", {"level": "3", "slicecrc": "1", "g": "1"}, containers=(".mkv", ".avi")),
    # ProRes 422 HQ / 4444
    "prores": Codec("prores_ks", {"profile": "3"}, depth=10, containers=(".mov", ".mkv")),
    # MPEG-4 Part 2 (DivX/Xvid), AVI's own lossy codec, for .avi: AVI stores no presentation
    # times, and FFmpeg reads H.264 from AVI one frame late, B-frames or not, while this codec
    # without B-frames reads back at its exact times. Fixed quantiser 2 (the finest FFmpeg
    # allows by default) with rate-distortion macroblock decisions and trellis quantisation: on
    # a greyscale copy of bikes.mp4, 47.5 dB luma PSNR at 1.3x the size of h264's default
    # (46.4 dB; docs/VIDEO.md).
    "mpeg4": Codec(
        "mpeg4",
        {
            "flags": "+qscale",
            "global_quality": str(2 * 118),
            "mbd": "rd",
            "trellis": "1",
            "bf": "0",
        },
        containers=(".avi",),
    ),
}
# Which codecs each container holds.
CONTAINER_CODECS = {
    ext: {name for name, codec in CODECS.items() if ext in codec.containers} for ext in CONTAINERS
}
# The codec an output gets when none is asked for.
DEFAULT_CODEC, _DEFAULT_CODECS = "h264", {".avi": "mpeg4"}


# x264's and x265's names (x264 --fullhelp, x265 --help), checked before any work: the encoder
# itself would refuse a wrong one only at the first frame, after the model loaded and decoding
# began, as "cannot write ...: Invalid argument".
PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
    "veryslow", "placebo",
)  # fmt: skip
TUNES = {
    "h264": ("film", "animation", "grain", "stillimage", "psnr", "ssim", "fastdecode",
             "zerolatency"),
    "h265": ("psnr", "ssim", "grain", "zerolatency", "fastdecode", "animation"),
}  # fmt: skip


def check_encoder_options(
    codec: str, crf: int | None, preset: str | None, tune: str | None
) -> None:
    """Refuse --crf, --preset and --tune values that ``codec``'s encoder would not take."""
    if CODECS[codec].crf is None:
        if (crf, preset, tune) != (None, None, None):
            raise UsageError(f"--crf, --preset and --tune apply to h264 and h265, not {codec}")
        return
    if preset is not None and preset not in PRESETS:
        raise UsageError(f"unknown --preset '{preset}' (choose from {', '.join(PRESETS)})")
    if tune is not None and tune != "none":
        # x264 takes several at once ("film,fastdecode"); x265 one
        parts = tune.split(",") if codec == "h264" else [tune]
        bad = [part for part in parts if part not in TUNES[codec]]
        if bad:
            raise UsageError(
                f"unknown --tune '{bad[0]}' for {codec} (choose from none, "
                f"{', '.join(TUNES[codec])})"
            )


def default_codec(dst: Path) -> str:
    """The codec for the output ``dst`` when none is asked for: h264, or mpeg4 for .avi."""
    return _DEFAULT_CODECS.get(dst.suffix.lower(), DEFAULT_CODEC)


def container_for(dst: Path, codec: str) -> str:
    """The container format an output named ``dst`` gets; an error if it cannot hold ``codec``."""
    ext = dst.suffix.lower()
    if ext not in CONTAINERS:
        raise UsageError(
            f"{dst}: unknown output type '{dst.suffix}' (video: {', '.join(CONTAINERS)})"
        )
    if codec not in CONTAINER_CODECS[ext]:
        fits = ", ".join(e for e, codecs in CONTAINER_CODECS.items() if codec in codecs)
        raise UsageError(f"{codec} cannot go into {ext} (use {fits})")
    return CONTAINERS[ext]
