"""`vidcolour bench` with one model worker and with two, and in an earlier tree: does running
the generator on two threads of one intra-op thread each move goal 1 (issue 22)?

    python benchmarks/model_workers.py --before c73cec5 --input clip.mp4 [--input ...] [--rounds 4]
        [--workers 1,2]

Each measurement is a fresh process running ``bench.run_bench`` with the bundled model (the
earlier tree's from a git worktree of ``--before``, put first on its path, run as its ``run``
runs: c73cec5 predates ``model_workers``, so there one model thread also stabilises and makes
the chroma). The configurations alternate round by round, so a drift of the machine falls on
all of them alike. ``--workers`` names this tree's configurations (default 1 and 2; 0 is auto,
what ``run`` does): with ``--workers 0`` it is this tree against the earlier one, each as a
user runs it. Prints each run's end to end, model alone and their ratio, then each
configuration's medians, then one JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys
tree, src, workers = json.loads(sys.argv[1])
sys.path.insert(0, tree)
from pathlib import Path
from vidcolour.bench import run_bench
from vidcolour.colouriser import Colouriser
colouriser = Colouriser.load(None, "cpu")
extra = {} if workers is None else {"model_workers": workers}
r = run_bench(colouriser, Path(src), log=lambda line: None, **extra)
keys = ("end_to_end_fps", "model_fps", "end_to_end_over_model", "stage_shares")
print(json.dumps({key: getattr(r, key) for key in keys}))
"""


def measure(tree: Path, src: Path, workers: int | None) -> dict:
    return run_child(tree, CHILD, [str(tree), str(src.resolve()), workers])


def run_child(tree: Path, child: str, settings: list[Any]) -> Any:
    """``child`` (Python source) in a fresh process of ``tree``, with ``settings`` as JSON in
    its argv[1]; its last line of output, read as JSON."""
    proc = subprocess.run(
        [sys.executable, "-c", child, json.dumps(settings)],
        cwd=tree,  # `python -c` puts the working folder first on the path: the tree measured
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """A git worktree of this repository at ``revision``, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="vidcolour-before-") as folder:
        path = Path(folder) / "before"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), revision],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        try:
            yield path
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT,
                           check=False, capture_output=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="a git revision of this repository")
    parser.add_argument("--input", type=Path, action="append", required=True)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workers", default="1,2", help="this tree's, comma-separated")
    args = parser.parse_args()
    results: dict[str, dict[str, list[dict]]] = {}
    with worktree(args.before) as before:
        configs: dict[str, tuple[Path, int | None]] = {f"before ({args.before})": (before, None)}
        for n in map(int, args.workers.split(",")):
            configs[f"workers {n}"] = (ROOT, n)
        for src in args.input:
            runs = results.setdefault(src.name, {name: [] for name in configs})
            for r in range(args.rounds):
                for name, (tree, workers) in configs.items():
                    figures = measure(tree, src, workers)
                    runs[name].append(figures)
                    print(f"{src.name} round {r + 1} {name}: end to end "
                          f"{figures['end_to_end_fps']:.2f} fps, model alone "
                          f"{figures['model_fps']:.2f}, ratio "
                          f"{figures['end_to_end_over_model']:.3f}", flush=True)  # fmt: skip
    summary = {
        src: {
            name: {
                key: round(statistics.median(r[key] for r in runs), 3)
                for key in ("end_to_end_fps", "model_fps", "end_to_end_over_model")
            }
            for name, runs in configs_runs.items()
        }
        for src, configs_runs in results.items()
    }
    for src, by_config in summary.items():
        for name, medians in by_config.items():
            print(f"{src} {name}: medians {medians}")
    print(json.dumps({"rounds": args.rounds, "medians": summary, "runs": results}))


if __name__ == "__main__":
    main()
