"""The generator alone in this tree against an earlier revision's, as `run` predicts (issue 22).

    python benchmarks/generator_versions.py --before ebc85b3 [--model default] [--size 256x384]
        [--batch 8] [--threads 1] [--batches 6] [--rounds 5]

Each measurement is a fresh process: this tree, or a git worktree of ``--before`` put first on
its path, loads the model as ``Colouriser.load`` does (the prediction form, channels-last, the
precision ``auto`` picks, glibc told to keep freed memory) and runs ``--batches`` batches of the
same seeded L at the working size ``--size`` on ``--threads`` intra-op threads, after two
batches of warm-up. The trees alternate round by round, so a drift of the machine falls on both
alike. Prints each round, then one JSON: the median milliseconds a frame of each tree, the
largest difference between their outputs (ab units, +-110 full scale) and the CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from colour_stage import cpu_name  # benchmarks/, the script's own folder
from model_workers import ROOT, run_child, worktree

from vidcolour.colour import AB_SCALE

CHILD = """
import json, sys, time
tree, model, size, batch, threads, batches, out = json.loads(sys.argv[1])
sys.path.insert(0, tree)
import torch
from vidcolour.colouriser import Colouriser
torch.set_num_threads(threads)
colouriser = Colouriser.load(model, "cpu")
generator = torch.Generator().manual_seed(0)
l = torch.rand(batch, 1, *size, generator=generator).mul_(2).sub_(1)
l = l.contiguous(memory_format=torch.channels_last)
times = []
with torch.inference_mode(), torch.autocast("cpu", dtype=colouriser.dtype or torch.float32,
                                            enabled=colouriser.dtype is not None):
    for i in range(batches + 2):
        start = time.perf_counter()
        ab = colouriser.forward(l)
        if i >= 2:
            times.append(time.perf_counter() - start)
torch.save(ab.float(), out)
print(json.dumps(times))
"""


def measure(tree: Path, args: argparse.Namespace, out: Path) -> list[float]:
    """Seconds per batch of ``--batches`` batches in a fresh process of ``tree``."""
    size = [int(side) for side in args.size.split("x")]
    return run_child(
        tree, CHILD, [str(tree), args.model, size, args.batch, args.threads, args.batches, str(out)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="a git revision of this repository")
    parser.add_argument("--model", default="default", help="a bundled model's name or a file")
    parser.add_argument("--size", default="256x384", help="HxW, the working size (576p's)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (a worker's)")
    parser.add_argument("--batches", type=int, default=6, help="timed batches a measurement")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    frames: dict[str, list[float]] = {}
    with worktree(args.before) as before, tempfile.TemporaryDirectory() as folder:
        trees = {f"before ({args.before})": before, "this tree": ROOT}
        outputs = {name: Path(folder) / f"{i}.pt" for i, name in enumerate(trees)}
        for r in range(args.rounds):
            for name, tree in trees.items():
                ms = 1000 * statistics.median(measure(tree, args, outputs[name])) / args.batch
                frames.setdefault(name, []).append(ms)
                print(f"round {r + 1} {name}: {ms:.2f} ms a frame", flush=True)
        a, b = (torch.load(path, weights_only=True) for path in outputs.values())
    result = {
        "cpu": cpu_name(),
        "model": args.model,
        "size": args.size,
        "batch": args.batch,
        "threads": args.threads,
        "ms_per_frame": {name: [round(ms, 2) for ms in runs] for name, runs in frames.items()},
        "median_ms_per_frame": {name: round(statistics.median(v), 2) for name, v in frames.items()},
        "largest_difference_ab": float((a - b).abs().max()) * AB_SCALE,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
