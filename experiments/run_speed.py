"""End-to-end `vidcolour run` speed of two models on the same clip, alternated in one run.

    python experiments/run_speed.py --model models/default.safetensors --reference paper \
        [--input examples/bikes_grey.mp4] [--rounds 3]

Each round runs `vidcolour run INPUT -o OUT.mp4` once per model, in turns, so that both see the
same machine load; prints each model's frames per second (frames / wall seconds of the whole
command, start-up included) per round, and the ratio model / reference with its spread. The
CPU model and its bf16 flags are printed beside the figures: they change from VM to VM.
"""

import argparse
import platform
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


def run_once(model: str, src: Path, out: Path) -> float:
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "vidcolour", "run", str(src), "-o", str(out), "--model", model]
    subprocess.run([*cmd, "--overwrite"], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--input", type=Path, default=ROOT / "examples" / "bikes_grey.mp4")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    frames = frames_of(args.input)
    print(f"{args.input.name}: {frames} frames; {cpu_line()}")
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.mp4"
        for r in range(args.rounds):
            fps = {m: frames / run_once(m, args.input, out) for m in (args.reference, args.model)}
            ratios.append(fps[args.model] / fps[args.reference])
            print(
                f"round {r + 1}: {args.model} {fps[args.model]:.1f} fps, "
                f"{args.reference} {fps[args.reference]:.1f} fps, ratio {ratios[-1]:.2f}"
            )
    spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
    print(f"ratio {statistics.median(ratios):.2f} (median of {len(ratios)}; {spread})")


if __name__ == "__main__":
    main()
