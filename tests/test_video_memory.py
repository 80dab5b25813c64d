"""A long stream in bounded memory (issue 5): run with ``pytest -m slow``.

20,000 frames flow through decode -> model -> encode; resident memory is sampled as frames are
written, and after warm-up it must not grow by more than 100 MB.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.video_helpers import save_tiny_model
from vidcolour import Colouriser
from vidcolour.video.pipeline import VideoOptions, colourise_video
from vidcolour.video.synth import write_clip

FRAMES = 20_000
WARM_UP = 2_000


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@pytest.mark.slow
def test_20k_frames_in_flat_memory(tmp_path: Path) -> None:
    src = write_clip(
        tmp_path / "long.mkv", frames=FRAMES, size=(72, 96), codec="ffv1", audio="flac"
    )
    colouriser = Colouriser.load(
        save_tiny_model(tmp_path / "tiny.safetensors"), "cpu", resolution=32
    )
    samples: list[tuple[int, float]] = []

    def progress(done: int, expected: int | None) -> None:
        samples.append((done, resident_mb()))

    options = VideoOptions(codec="h264", batch_size=8)
    report = colourise_video(colouriser, src, tmp_path / "out.mp4", options, progress)
    assert report.frames == FRAMES
    after_warm_up = [mb for done, mb in samples if done >= WARM_UP]
    growth = max(after_warm_up) - after_warm_up[0]
    print(
        f"resident memory: {after_warm_up[0]:.0f} MB after {WARM_UP} frames, "
        f"peak {max(after_warm_up):.0f} MB, growth {growth:.1f} MB over {FRAMES} frames"
    )
    assert growth < 100
