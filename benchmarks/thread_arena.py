"""The generator alone on the main thread and on a thread started for it, with glibc's malloc
giving that thread an arena of its own or the main one (perf.keep_freed_memory).

    python benchmarks/thread_arena.py [--size 576x720] [--rounds 3]

The pipeline runs the generator on threads of its own. ``perf.keep_freed_memory`` tunes glibc's
malloc to keep freed activation memory; a thread in an arena of its own pays what the tuning
spared the main thread (docs/BENCHMARKS.md, "Two model workers, one malloc arena"). Each
configuration is a fresh process (an arena is a thread's from its first allocation on); the two
alternate round by round. Prints fps, medians of 12 batches of 8, bundled model.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import ctypes, json, statistics, sys, threading, time
import torch
from vidcolour.colouriser import Colouriser

own_arena, height, width = json.loads(sys.argv[1])
colouriser = Colouriser.load(None, "cpu")  # keep_freed_memory: one arena
if own_arena:  # glibc takes no 0 (its default); any limit above the threads here will do
    ctypes.CDLL("libc.so.6").mallopt(-8, 64)  # M_ARENA_MAX
size = colouriser.working_size(height, width)
L = torch.rand(8, 1, *size) * 100


def timed(times):
    colouriser.predict_ab(L, size)  # warm: this thread's pool and memory
    for _ in range(12):
        start = time.perf_counter()
        colouriser.predict_ab(L, size)
        times.append(time.perf_counter() - start)


main, started = [], []
timed(main)
thread = threading.Thread(target=timed, args=(started,))
thread.start()
thread.join()
print(json.dumps([8 / statistics.median(t) for t in (main, started)]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="576x720", help="HEIGHTxWIDTH of the frames")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    results: dict[str, list[list[float]]] = {"own arena": [], "main arena": []}
    for r in range(args.rounds):
        for name in results:
            arg = json.dumps([name == "own arena", height, width])
            out = subprocess.run(
                [sys.executable, "-c", CHILD, arg], capture_output=True, text=True, check=True
            )
            main_fps, thread_fps = json.loads(out.stdout.strip().splitlines()[-1])
            results[name].append([main_fps, thread_fps])
            print(f"round {r + 1}, {name}: main thread {main_fps:.1f} fps, "
                  f"a started thread {thread_fps:.1f} fps ({thread_fps / main_fps:.3f})",
                  flush=True)  # fmt: skip
    print(json.dumps({"size": args.size, "fps_main_then_thread": results}))


if __name__ == "__main__":
    main()
