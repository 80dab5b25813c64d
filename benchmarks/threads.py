"""End to end with the pipeline's thread pools sized differently: does oversubscribing two
cores cost what it seems to (issue 22, docs/BENCHMARKS.md)?

    python benchmarks/threads.py [--input clip.mp4] [--rounds 2] [--compile]

Each configuration runs in its own process (thread pools are fixed once started): torch's
intra-op threads (the generator, the colour maths), OpenCV's (the stabiliser's flow and
warps) and x264's frame threads (0: x264's own choice, 1.5x the cores). The configurations
alternate round by round, so that a drift of the machine falls on all of them alike. Input: a
synthetic 720x576 H.264 clip of 200 frames (as `vidcolour bench`), unless --input. Prints
each run's end-to-end fps and each configuration's median, then one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIGS = {  # name: (torch threads, OpenCV threads, x264 threads); 0 = the library's default
    "defaults": (0, 0, 0),
    "opencv 1": (0, 1, 0),
    "x264 2": (0, 0, 2),
    "opencv 1, x264 2": (0, 1, 2),
    "opencv 1, x264 1": (0, 1, 1),
    "torch 1": (1, 0, 0),
}

CHILD = """
import json, sys, time
from pathlib import Path
import cv2, torch
from vidcolour import Colouriser
from vidcolour.video.codecs import CODECS
from vidcolour.video.pipeline import VideoOptions, colourise_video
torch_threads, cv_threads, x264_threads, src, dst, compiled = json.loads(sys.argv[1])
if torch_threads:
    torch.set_num_threads(torch_threads)
if cv_threads:
    cv2.setNumThreads(cv_threads)
if x264_threads:
    CODECS["h264"].options["threads"] = str(x264_threads)
colouriser = Colouriser.load(None, "cpu", compiled=compiled)
options = VideoOptions(codec="h264", overwrite=True)
colourise_video(colouriser, Path(src), Path(dst), options)  # warm: first batches, compile
report = colourise_video(colouriser, Path(src), Path(dst), options)
print(json.dumps({"fps": report.fps}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, help="a video [default: synthetic 720x576]")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="as run --compile")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vidcolour-threads-") as scratch:
        src = args.input
        if src is None:
            from vidcolour.bench import SYNTHETIC_FRAMES, SYNTHETIC_SIZE
            from vidcolour.video.synth import write_clip

            src = write_clip(Path(scratch) / "sd.mp4", frames=SYNTHETIC_FRAMES, size=SYNTHETIC_SIZE)
        runs: dict[str, list[float]] = {name: [] for name in CONFIGS}
        for round_ in range(args.rounds):
            for name, threads in CONFIGS.items():
                argv = json.dumps([*threads, str(src), f"{scratch}/out.mp4", args.compile])
                done = subprocess.run(
                    [sys.executable, "-c", CHILD, argv],
                    capture_output=True,
                    text=True,
                    check=True,
                    env={**os.environ, "PYTHONWARNINGS": "ignore"},
                )
                fps = json.loads(done.stdout.strip().splitlines()[-1])["fps"]
                runs[name].append(fps)
                print(f"round {round_ + 1} {name:18s} {fps:6.1f} fps", file=sys.stderr)
    for name, values in runs.items():
        print(f"{name:18s} median {statistics.median(values):6.1f} fps", file=sys.stderr)
    print(json.dumps({"cpu_count": os.cpu_count(), "compiled": args.compile, "fps": runs}))


if __name__ == "__main__":
    main()
