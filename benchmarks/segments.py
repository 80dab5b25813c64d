"""What making a film in segments costs (issue 23's figures), in one run.

    python benchmarks/segments.py [--input examples/bikes_grey.mp4] [--repeat 8] [--rounds 2]

The input is repeated ``--repeat`` times end to end into one longer film (stream copy of its
packets, timestamps moved on, so the copy costs no decode), then colourised with the bundled
model, H.264 out, three ways, alternately, best of ``--rounds``: in one piece
(``segment_seconds=None``), with the default segment length, and with segments of
``--short`` seconds. Reported: frames per second of each and their ratio to one piece, the
join's share (the time of the final packet copy), the segments' count, the largest state file
and the work folder's largest size, sampled while it runs, against the output's size.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import tempfile
import threading
import time
from pathlib import Path

import av

from vidcolour.colouriser import Colouriser
from vidcolour.defaults import SEGMENT_SECONDS
from vidcolour.video import segments
from vidcolour.video.pipeline import VideoOptions, colourise_video

ROOT = Path(__file__).resolve().parents[1]


def repeated(src: Path, dst: Path, times: int) -> Path:
    """``src``'s video ``times`` over, one after the other (packets copied)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        packets = [p for p in inp.demux(stream) if p.size]
        span = max(p.pts + (p.duration or 0) for p in packets) - min(p.pts for p in packets)
        for k in range(times):
            for p in packets:
                clone = av.Packet(bytes(p))
                clone.pts, clone.dts = p.pts + k * span, p.dts + k * span
                clone.time_base, clone.stream = p.time_base, copy
                clone.is_keyframe, clone.duration = p.is_keyframe, p.duration
                out.mux(clone)
    return dst


def largest(folder: Path, stop: threading.Event, seen: list[int]) -> None:
    """Sample the work folder's size until ``stop``."""
    while not stop.is_set():
        with contextlib.suppress(OSError):  # not there yet, or a file renamed meanwhile
            seen.append(sum(p.stat().st_size for p in folder.iterdir()))
        time.sleep(0.02)


def one(colouriser: Colouriser, src: Path, dst: Path, seconds: float | None) -> dict:
    joined = {"s": 0.0}
    join = segments.join

    def timed(*args: object) -> int:
        clock = time.perf_counter()
        copied = join(*args)  # type: ignore[arg-type]
        joined["s"] = time.perf_counter() - clock
        return copied

    segments.join = timed  # type: ignore[assignment]
    import vidcolour.video.pipeline as pipeline

    pipeline.join = timed  # type: ignore[assignment]
    stop, seen = threading.Event(), [0]
    work = segments.work_path(dst)
    sampler = threading.Thread(target=largest, args=(work, stop, seen), daemon=True)
    sampler.start()
    count, state = [0], [0]

    def on_segment(finished: int, frames: int) -> None:
        count[0] = finished
        state[0] = max([state[0], *(p.stat().st_size for p in work.glob("state-*.npz"))])

    try:
        options = VideoOptions("h264", segment_seconds=seconds, overwrite=True)
        report = colourise_video(colouriser, src, dst, options, on_segment=on_segment)
    finally:
        stop.set()
        sampler.join()
        segments.join = join  # type: ignore[assignment]
        pipeline.join = join  # type: ignore[assignment]
    return {
        "fps": report.fps,
        "seconds": report.seconds,
        "join_s": joined["s"],
        "segments": count[0],
        "state_bytes": state[0],
        "work_bytes": max(seen),
        "output_bytes": dst.stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=ROOT / "examples" / "bikes_grey.mp4")
    parser.add_argument("--repeat", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--short", type=float, default=20.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    colouriser = Colouriser.load(device="cpu")
    ways = {"one piece": None, "default": SEGMENT_SECONDS, "short": args.short}
    results: dict[str, list[dict]] = {name: [] for name in ways}
    with tempfile.TemporaryDirectory() as tmp:
        film = repeated(args.input, Path(tmp) / "film.mkv", args.repeat)
        for _ in range(args.rounds):
            for name, seconds in ways.items():
                results[name].append(one(colouriser, film, Path(tmp) / "out.mp4", seconds))
    best = {name: max(runs, key=lambda r: r["fps"]) for name, runs in results.items()}
    base = best["one piece"]["fps"]
    summary = {
        "cpu": platform.processor() or platform.machine(),
        "input": str(args.input),
        "repeat": args.repeat,
        "best": best,
        "fps_ratio": {name: r["fps"] / base for name, r in best.items()},
        "all_fps": {name: [round(r["fps"], 1) for r in runs] for name, runs in results.items()},
    }
    for name, r in best.items():
        print(
            f"{name:>9}: {r['fps']:.1f} fps ({r['fps'] / base:.3f} of one piece), "
            f"{r['segments']} segments, join {r['join_s']:.2f} s of {r['seconds']:.1f} s, "
            f"largest state {r['state_bytes'] / 2**20:.2f} MiB, work folder at most "
            f"{r['work_bytes'] / 2**20:.1f} MiB for an output of "
            f"{r['output_bytes'] / 2**20:.1f} MiB"
        )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
