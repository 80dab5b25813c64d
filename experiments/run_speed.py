"""End-to-end `vidcolour run` speed of two models on the same clip, alternated in one run.

    python experiments/run_speed.py --model models/default.safetensors --reference paper \
        [--input examples/bikes_grey.mp4] [--rounds 3]

Each round runs `vidcolour run INPUT -o OUT.mp4` once per model, in turns, so that both see the
same machine load; prints per round each model's frames per second twice: the pipeline's, from
run's own summary line (decode to encode, the rate a long film runs at), and the whole
command's (start-up and model loading included, what a short clip costs); then the ratios
model / reference with their spread. The
CPU model and its bf16 flags are printed beside the figures: they change from VM to VM.
"""

import argparse
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent


def cpu_line() -> str:
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return f"{model}; {' '.join(f for f in wanted if f in flags) or 'no avx2'}"


def frames_of(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def run_once(model: str, src: Path, out: Path, frames: int) -> tuple[float, float]:
    """(pipeline fps from run's summary line, whole-command fps)."""
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "vidcolour", "run", str(src), "-o", str(out), "--model", model]
    done = subprocess.run([*cmd, "--overwrite"], check=True, capture_output=True, text=True)
    whole = frames / (time.perf_counter() - start)
    found = re.search(r"\(([0-9.]+) fps\)", done.stderr + done.stdout)
    if found is None:
        raise SystemExit(f"no fps in run's summary: {done.stderr[-500:]}")
    return float(found.group(1)), whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--input", type=Path, default=ROOT / "examples" / "bikes_grey.mp4")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    frames = frames_of(args.input)
    print(f"{args.input.name}: {frames} frames; {cpu_line()}")
    ratios: dict[str, list[float]] = {"pipeline": [], "whole command": []}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.mp4"
        for r in range(args.rounds):
            fps = {m: run_once(m, args.input, out, frames) for m in (args.reference, args.model)}
            for k, kind in enumerate(ratios):
                ratios[kind].append(fps[args.model][k] / fps[args.reference][k])
            print(
                f"round {r + 1}: pipeline {args.model} {fps[args.model][0]:.1f} fps, "
                f"{args.reference} {fps[args.reference][0]:.1f} fps; whole command "
                f"{fps[args.model][1]:.1f} and {fps[args.reference][1]:.1f} fps"
            )
    for kind, values in ratios.items():
        spread = f"{min(values):.2f}-{max(values):.2f}"
        print(f"{kind} ratio {statistics.median(values):.2f} (median of {len(values)}; {spread})")


if __name__ == "__main__":
    main()
