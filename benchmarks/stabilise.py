"""Chroma stabilisation: what it does to flicker, accuracy and speed, in one run.

    python benchmarks/stabilise.py --data ../shared/data [--json out.json]

Two greyscale inputs with colour originals:

- bikes: a greyscale copy of video/bikes.mp4 (640x272, 250 frames, 6 shots);
- film: synthetic moving scenes with cuts, made here from the first six photographs of
  open-photos/val (30-frame shots, 480x270, pan and push-in), with old film's frame-to-frame
  faults added: grain (sigma 8 codes) and exposure flicker (gain sigma 4%).

Each is colourised with the bundled model per frame (--no-stabilise) and stabilised (default
strength, or --strength),
FFV1 (lossless, so the metrics see what the pipeline made), and measured by eval-video against
its colour original (whose own CDC, the change its content makes, is measured too); the first
frame of every shot is compared between the two outputs. Speed:
`run`'s default H.264 output, per frame and stabilised alternately, best of --rounds (0: no
speed runs). Also the stabiliser's own cost per frame on a 640x256 picture (the bikes working
size): DIS flow alone at its "fast" and "ultrafast" presets, and a whole Stabiliser.step with
each.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

from vidcolour.colouriser import Colouriser
from vidcolour.defaults import STABILISE_STRENGTH
from vidcolour.perf import keep_freed_memory
from vidcolour.video.evaluate import evaluate_video
from vidcolour.video.flow import Flow
from vidcolour.video.pipeline import VideoOptions, colourise_video
from vidcolour.video.stabilise import Stabiliser
from vidcolour.video.synth import grey_copy, write_scenes

KEYS = ("cdc", "cdc_ab", "warp_error", "ab_l1", "colourfulness")


def chroma_planes(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [
            np.stack([np.frombuffer(f.planes[i], np.uint8) for i in (1, 2)])
            for f in container.decode(video=0)
        ]


def step_cost(repeats: int = 50) -> dict[str, float]:
    """Milliseconds per frame, 640x256, median, the ways alternated: DIS flow at its "fast"
    and "ultrafast" presets, and a whole stabiliser step with each (the stabiliser's own:
    ``stabilise.FLOW_PRESET``)."""
    rng = np.random.default_rng(0)
    noise = (rng.random((256, 640)) * 255).astype(np.uint8)
    luma = cv2.GaussianBlur(noise, (0, 0), 2)
    ab = (rng.random((2, 256, 640)) * 40 - 20).astype(np.float32)
    fast = Flow(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    ultrafast = Flow(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    step_fast = Stabiliser(flow_preset=cv2.DISOPTICAL_FLOW_PRESET_FAST)
    step_ultrafast = Stabiliser(flow_preset=cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    ways: dict[str, Callable[[np.ndarray], object]] = {
        "flow_fast": lambda moved: fast(moved, luma),
        "flow_ultrafast": lambda moved: ultrafast(moved, luma),
        "step_fast": lambda moved: step_fast.step(moved, ab, cut=False),
        "step_ultrafast": lambda moved: step_ultrafast.step(moved, ab, cut=False),
    }
    step_fast.step(luma, ab, cut=True)
    step_ultrafast.step(luma, ab, cut=True)
    costs: dict[str, list[float]] = {name: [] for name in ways}
    for i in range(repeats):
        moved = np.roll(luma, 1 + i % 3, axis=1)  # a small pan
        for name, way in ways.items():
            start = time.perf_counter()
            way(moved)
            costs[name].append(time.perf_counter() - start)
    return {k: 1000 * float(np.median(v)) for k, v in costs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--strength", type=float, default=STABILISE_STRENGTH)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    colouriser = Colouriser.load()
    if colouriser.device.type == "cpu":
        keep_freed_memory()
    result: dict[str, object] = {
        "device": str(colouriser.device),
        "strength": args.strength,
        "per_frame_ms_640x256": step_cost(),
        "clips": {},
    }
    print(json.dumps(result["per_frame_ms_640x256"]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bikes = args.data / "video" / "bikes.mp4"
        photos = sorted((args.data / "open-photos" / "val").glob("*.jpg"))[:6]
        film = root / "film.mkv"
        write_scenes(
            film,
            [np.asarray(Image.open(p).convert("RGB")) for p in photos],
            frames_per_shot=30,
            size=(270, 480),
            grain=8.0,
            exposure_flicker=0.04,
        )
        for name, colour in (("bikes", bikes), ("film", film)):
            grey = grey_copy(colour, root / f"{name}_grey.mkv")
            outputs, scores, cuts = {}, {}, []
            for stabilise in (False, True):
                out = root / f"{name}_{stabilise}.mkv"
                options = VideoOptions("ffv1", stabilise=stabilise, strength=args.strength)
                report = colourise_video(colouriser, grey, out, options)
                cuts = report.cuts or cuts
                outputs[stabilise] = chroma_planes(out)
                mean = evaluate_video(out, colour)["mean"]
                scores["stabilised" if stabilise else "per_frame"] = {k: mean[k] for k in KEYS}
            truth = evaluate_video(colour)["mean"]  # the colour original's own change
            scores["original"] = {k: truth[k] for k in KEYS if k != "ab_l1"}
            same = all(np.array_equal(outputs[True][t], outputs[False][t]) for t in [0, *cuts])
            best = {False: float("inf"), True: float("inf")}
            for _ in range(args.rounds):
                for stabilise in (False, True):
                    out = root / f"{name}_speed.mp4"
                    start = time.perf_counter()
                    report = colourise_video(
                        colouriser,
                        grey,
                        out,
                        VideoOptions(stabilise=stabilise, strength=args.strength, overwrite=True),
                    )
                    best[stabilise] = min(best[stabilise], time.perf_counter() - start)
            frames = len(outputs[True])
            per, stab = scores["per_frame"], scores["stabilised"]
            result["clips"][name] = {  # type: ignore[index]
                "frames": frames,
                "cuts": cuts,
                "first_frame_of_each_shot_equal": same,
                **scores,
                "change": {k: stab[k] / per[k] - 1 for k in KEYS if k in stab},
            }
            if args.rounds:
                result["clips"][name] |= {  # type: ignore[index]
                    "fps_per_frame": frames / best[False],
                    "fps_stabilised": frames / best[True],
                    "fps_ratio": best[False] / best[True],
                }
            print(name, json.dumps(result["clips"][name], indent=1), flush=True)  # type: ignore[index]
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
