"""What `vidcolour batch` costs on top of `vidcolour run`, measured in one process.

    python benchmarks/batch_overhead.py [--clip examples/bikes_grey.mp4] [--copies 4]
        [--rounds 2] [--json out.json]

The same clips (``--copies`` copies of ``--clip``), the same loaded model, four ways, in
alternating rounds (best round kept, since this VM's timings swing):

- run:        colourise_video on each clip, as `vidcolour run` does;
- run+checks: the same with the no-ground-truth checks (colourfulness, CDC) on every frame;
- batch:      Batch.run over a folder of the clips into a fresh DST_DIR: ledger, claims,
              input and output hashes, checks, reading each output back, reports not included;
- batch x2:   the same with --jobs 2.

Reports each way's frames per second and its ratio to run's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import av

from vidcolour.batch.plan import Shard, plan_batch
from vidcolour.batch.runner import Batch, Outcome, Settings
from vidcolour.colouriser import Colouriser
from vidcolour.perf import keep_freed_memory
from vidcolour.video.checks import TemporalChecks
from vidcolour.video.pipeline import VideoOptions, colourise_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=Path("examples/bikes_grey.mp4"))
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    colouriser = Colouriser.load(None, args.device)
    if colouriser.device.type == "cpu":
        keep_freed_memory()
    options = VideoOptions()
    settings = Settings("h264", None, None, None, colouriser.resolution, "auto")
    with av.open(str(args.clip)) as container:
        frames_per_clip = sum(1 for _ in container.decode(video=0))
    frames = frames_per_clip * args.copies
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = root / "src"
        src.mkdir()
        for i in range(args.copies):
            shutil.copy(args.clip, src / f"clip{i}{args.clip.suffix}")
        clips = sorted(src.iterdir())

        def run(checks: bool) -> float:
            out = root / "run"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            start = time.perf_counter()
            for clip in clips:
                check = TemporalChecks() if checks else None
                colourise_video(colouriser, clip, out / clip.name, options, checks=check)
            return time.perf_counter() - start

        def batch(jobs: int) -> float:
            dst = root / "dst"
            shutil.rmtree(dst, ignore_errors=True)
            plan = plan_batch(src, dst, (), "h264", Shard())
            start = time.perf_counter()
            result = Batch(plan, colouriser, options, settings, jobs=jobs).run()
            assert set(result.outcomes.values()) == {Outcome.DONE}, result.outcomes
            return time.perf_counter() - start

        ways = {
            "run": lambda: run(False),
            "run+checks": lambda: run(True),
            "batch": lambda: batch(1),
            "batch x2": lambda: batch(2),
        }
        best = {name: float("inf") for name in ways}
        run(False)  # warm-up: allocator, kernels, page cache
        for _ in range(args.rounds):
            for name, way in ways.items():
                best[name] = min(best[name], way())
    result = {
        "device": str(colouriser.device),
        "clip": str(args.clip),
        "frames": frames,
        "fps": {name: frames / seconds for name, seconds in best.items()},
        "ratio_to_run": {name: best["run"] / seconds for name, seconds in best.items()},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
