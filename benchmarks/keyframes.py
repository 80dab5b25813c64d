"""Keyframe-guided colour against the automatic output, in one run (issue 21's figures).

    python benchmarks/keyframes.py --data ../shared/data [--json out.json] [--plot out.png] \
        [--figure docs/images/keyframes_before_after.jpg]

A greyscale copy of video/bikes.mp4 (640x272, 250 frames, 6 shots; FFV1, so nothing but the
luma is lost) is colourised twice with the bundled model, FFV1 out: automatically (stabilised,
the default) and with one keyframe per shot, the middle frame of each shot taken from the
colour original (standing in for a perfect painted keyframe). Both are measured by eval-video
against the original: ab-L1 over the clip and per shot, CDC; and ab-L1 against the distance
from the shot's keyframe (the plot). Speed: `run`'s default H.264 output, automatic and guided
alternately, best of --rounds, and their ratio. --figure: frame ``FIGURE_FRAME`` (frame 50 of
examples/bikes_grey.mp4, the README's), 13 frames from its shot's keyframe: grey input,
automatic, keyframe-guided, original.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

from vidcolour.colouriser import Colouriser
from vidcolour.perf import keep_freed_memory
from vidcolour.video.evaluate import evaluate_video, find_cuts
from vidcolour.video.pipeline import VideoOptions, colourise_video
from vidcolour.video.synth import frame_rgb, grey_copy

FIGURE_FRAME = 175


def write_keyframes(colour: Path, frames: list[int], folder: Path) -> dict[int, Path]:
    """The colour original's ``frames`` as PNGs named by frame number."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted, paths = set(frames), {}
    with av.open(str(colour)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                paths[index] = folder / f"{index:06d}.png"
                frame.to_image().save(paths[index])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args()

    colouriser = Colouriser.load()
    if colouriser.device.type == "cpu":
        keep_freed_memory()
    colour = args.data / "video" / "bikes.mp4"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        grey = grey_copy(colour, root / "bikes_grey.mkv")
        cuts, _, count = find_cuts(grey)
        starts, ends = [0, *cuts], [*cuts, count]
        middles = [(s + e) // 2 for s, e in zip(starts, ends, strict=True)]
        keyframes = write_keyframes(colour, middles, root / "keyframes")
        runs = {
            "automatic": VideoOptions("ffv1"),
            "keyframes": VideoOptions("ffv1", keyframes=keyframes),
        }
        documents = {}
        for name, options in runs.items():
            out = root / f"{name}.mkv"
            colourise_video(colouriser, grey, out, options)
            documents[name] = evaluate_video(out, colour)
        if args.figure:
            panels = [frame_rgb(v, FIGURE_FRAME) for v in (grey, root / "automatic.mkv",
                      root / "keyframes.mkv", colour)]  # fmt: skip
            gap = np.full((panels[0].shape[0], 8, 3), 255, np.uint8)
            row = np.concatenate([x for p in panels for x in (p, gap)][:-1], axis=1)
            Image.fromarray(row).save(args.figure, quality=88)
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(args.rounds):
            for name, options in runs.items():
                out = root / "speed.mp4"
                start = time.perf_counter()
                colourise_video(
                    colouriser, grey, out, VideoOptions(keyframes=options.keyframes, overwrite=True)
                )
                best[name] = min(best[name], time.perf_counter() - start)

    result: dict[str, object] = {"clip": str(colour), "frames": count, "keyframes": middles}
    per_shot = []
    for shot, (s, e, k) in enumerate(zip(starts, ends, middles, strict=True)):
        row: dict[str, object] = {"shot": shot, "frames": [s, e], "keyframe": k}
        for name, doc in documents.items():
            row[name] = float(np.mean([f["ab_l1"] for f in doc["per_frame"][s:e]]))
        per_shot.append(row)
    result["per_shot_ab_l1"] = per_shot
    for name, doc in documents.items():
        result[name] = {k: doc["mean"][k] for k in ("ab_l1", "cdc", "cdc_ab", "colourfulness")}
    auto, guided = result["automatic"], result["keyframes"]  # type: ignore[assignment]
    result["ab_l1_change"] = guided["ab_l1"] / auto["ab_l1"] - 1
    result["lower_in_every_shot"] = all(r["keyframes"] < r["automatic"] for r in per_shot)
    result["cdc_not_above_automatic"] = guided["cdc"] <= auto["cdc"]
    if args.rounds:
        result["seconds"] = best
        result["time_ratio"] = best["keyframes"] / best["automatic"]
    by_distance: dict[int, list[float]] = {}
    for s, e, k in zip(starts, ends, middles, strict=True):
        for t in range(s, e):
            by_distance.setdefault(abs(t - k), []).append(
                documents["keyframes"]["per_frame"][t]["ab_l1"]
            )
    result["ab_l1_by_distance"] = {d: float(np.mean(v)) for d, v in sorted(by_distance.items())}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.plot:
        plot(result, documents, starts, ends, middles, args.plot)


def plot(result, documents, starts, ends, middles, path: Path) -> None:  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, doc in documents.items():
        left.plot([f["ab_l1"] for f in doc["per_frame"]], label=name)
    for s in starts[1:]:
        left.axvline(s, color="grey", lw=0.6, ls=":")
    left.plot(middles, [documents["keyframes"]["per_frame"][k]["ab_l1"] for k in middles],
              "v", color="black", label="keyframe")  # fmt: skip
    left.set(xlabel="frame", ylabel="ab-L1 against the original", title="bikes.mp4, per frame")
    left.legend(fontsize=8)
    by_distance = result["ab_l1_by_distance"]
    auto_by: dict[int, list[float]] = {}
    for s, e, k in zip(starts, ends, middles, strict=True):
        for t in range(s, e):
            auto_by.setdefault(abs(t - k), []).append(
                documents["automatic"]["per_frame"][t]["ab_l1"]
            )
    right.plot(list(by_distance), list(by_distance.values()), "o-", label="keyframes")
    auto_means = {d: float(np.mean(v)) for d, v in sorted(auto_by.items())}
    right.plot(list(auto_means), list(auto_means.values()), "s-", label="automatic")
    right.set(xlabel="frames from the shot's keyframe", ylabel="mean ab-L1",
              title="error against distance from the keyframe")  # fmt: skip
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
