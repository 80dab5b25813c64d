"""Where the colour stage's time goes, piece by piece, at one picture size (issue 22).

    python benchmarks/colour_stage.py [--size 576x720] [--batch 8] [--rounds 20]

The colour stage of `vidcolour run` for one batch of 4:2:0 frames, each piece timed alone
(median of --rounds, milliseconds per frame): codes to [0, 1] luma, L at the chroma sites,
luma to the working size, the generator, the stabiliser, ab back to the chroma size, Lab to
Cb/Cr codes; and the whole `video_chroma` call. Prints one JSON object, with the CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from vidcolour.colour import YCbCrCoding, grey_to_l, lab_to_chroma, site_lightness
from vidcolour.colouriser import Colouriser
from vidcolour.perf import keep_freed_memory
from vidcolour.predict import resize as _resize
from vidcolour.video.colourise import video_chroma
from vidcolour.video.stabilise import Stabiliser


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@torch.inference_mode()  # as the model thread runs
def median_ms(work: Callable[[], object], rounds: int, frames: int) -> float:
    work()  # warm up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / frames


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="576x720", help="HEIGHTxWIDTH")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    height, width = map(int, args.size.split("x"))
    colouriser = Colouriser.load(args.model)
    if colouriser.device.type == "cpu":
        keep_freed_memory()
    coding = YCbCrCoding("bt601")
    rng = np.random.default_rng(0)
    base = rng.integers(16, 236, (1, height // 8, width // 8)).astype(np.uint8)
    luma = np.repeat(np.repeat(base, 8, 1), 8, 2).repeat(args.batch, 0)  # smooth-ish content
    chroma_size = (height // 2, width // 2)
    size = colouriser.working_size(height, width)
    b = args.batch
    codes = torch.from_numpy(luma)
    y = coding.luma_to_unit(codes.float()).unsqueeze(1)
    y_work = _resize(y, size)
    L_work = grey_to_l(y_work)
    ab = colouriser.predict_ab(L_work, size)
    L_chroma = site_lightness(y, coding, chroma_size)
    ab_chroma = _resize(ab, chroma_size)
    stabiliser = Stabiliser()
    stabiliser.run(ab, y_work, [True] + [False] * (b - 1))

    pieces = {
        "luma codes to [0, 1]": lambda: coding.luma_to_unit(codes.float()),
        "L at the chroma sites": lambda: site_lightness(y, coding, chroma_size),
        "luma to the working size": lambda: grey_to_l(_resize(y, size)),
        "generator": lambda: colouriser.predict_ab(L_work, size),
        "stabiliser": lambda: stabiliser.run(ab, y_work, [False] * b),
        "ab to the chroma size": lambda: _resize(ab, chroma_size),
        "Lab to Cb/Cr codes": lambda: lab_to_chroma(L_chroma, ab_chroma, coding),
        "video_chroma (all but the stabiliser)": lambda: video_chroma(
            colouriser, luma, coding, coding, chroma_size
        ),
    }
    result = {
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "size": [height, width],
        "working_size": list(size),
        "batch": b,
        "model": colouriser.name,
        "ms_per_frame": {k: round(median_ms(v, args.rounds, b), 3) for k, v in pieces.items()},
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
