"""What each compiled part of `run --compile` is worth end to end: the generator compiled
alone, against the generator and the colour maths (Lab -> Cb/Cr) both compiled, as `--compile`
does (docs/BENCHMARKS.md).

    python benchmarks/compile_parts.py [--input clip.mp4] [--rounds 3]

One compiled model, one process; both variants run once to warm (compiles), then alternate
round by round. Input: a synthetic 720x576 H.264 clip of 200 frames (as `vidcolour bench`),
unless --input. Prints one JSON object: each variant's end-to-end fps per round.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import vidcolour.video.pipeline as pipeline
from vidcolour import Colouriser
from vidcolour.bench import SYNTHETIC_FRAMES, SYNTHETIC_SIZE
from vidcolour.video.colourise import ColourStage
from vidcolour.video.synth import write_clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, help="a video [default: synthetic 720x576]")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    colouriser = Colouriser.load(None, "cpu", compiled=True)
    options = pipeline.VideoOptions(codec="h264", overwrite=True)

    def eager_chroma(*a, **k) -> ColourStage:  # the stage as before: its maths uncompiled
        return ColourStage(*a, **{**k, "compiled": False})

    variants = {"generator only": eager_chroma, "generator and colour maths": ColourStage}
    with tempfile.TemporaryDirectory(prefix="vidcolour-compile-") as scratch:
        src = args.input or write_clip(
            Path(scratch) / "sd.mp4", frames=SYNTHETIC_FRAMES, size=SYNTHETIC_SIZE
        )

        def run(stage: object) -> float:
            pipeline.ColourStage = stage  # type: ignore[assignment, misc]
            return pipeline.colourise_video(colouriser, src, Path(scratch) / "out.mp4", options).fps

        for stage in variants.values():
            run(stage)  # warm
        fps: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, stage in variants.items():
                fps[name].append(round(run(stage), 2))
    print(json.dumps({"end_to_end_fps": fps}))


if __name__ == "__main__":
    main()
