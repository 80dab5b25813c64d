"""Issue 22's colour-stage changes, each against what it replaced, in one run.

    python benchmarks/colour_stage_changes.py [--size 1080x1920] [--rounds 3] [--compile]

Milliseconds per frame (batch 8, median of --rounds, the two ways alternated) of:
Lab -> Cb/Cr (kornia's lab_to_rgb then the matrix, against colour.lab_to_chroma), L at the
chroma sites (two powers a pixel, against colour.site_lightness), luma codes to [0, 1] (out of
place, against in place), ab enlarged to the chroma size (antialiased, against not), and the
generator alone at 640x256 contiguous against channels-last, for the bundled and the lite0
model. Also the largest code difference of each replacement. --compile adds lab_to_chroma under
torch.compile (needs a C++ compiler; the compile time is printed). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from vidcolour.colour import (
    YCBCR_MATRICES,
    YCbCrCoding,
    grey_to_l,
    lab_to_chroma,
    lab_to_rgb,
    normalise_l,
    site_lightness,
)
from vidcolour.colouriser import Colouriser
from vidcolour.perf import keep_freed_memory


def kornia_lab_to_chroma(
    L: torch.Tensor, ab: torch.Tensor, coding: YCbCrCoding
) -> tuple[torch.Tensor, torch.Tensor]:
    """lab_to_chroma as it was: kornia's Lab -> R'G'B', then the Y'CbCr matrix."""
    kr, kb = YCBCR_MATRICES[coding.matrix]
    rgb = lab_to_rgb(torch.cat([L, ab], dim=1))
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    y = kr * r + (1 - kr - kb) * g + kb * b
    return (
        coding.chroma_to_code((b - y) / (2 * (1 - kb))),
        coding.chroma_to_code((r - y) / (2 * (1 - kr))),
    )


def compare(
    old: Callable[[], object], new: Callable[[], object], rounds: int, frames: int
) -> dict[str, float]:
    times: dict[str, list[float]] = {"before": [], "after": []}
    old(), new()  # warm up
    for _ in range(rounds):
        for name, work in (("before", old), ("after", new)):
            start = time.perf_counter()
            work()
            times[name].append(time.perf_counter() - start)
    return {k: round(1000 * statistics.median(v) / frames, 2) for k, v in times.items()}


def code_difference(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> int:
    return int(max((x.round() - y.round()).abs().max() for x, y in zip(a, b, strict=True)))


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1080x1920", help="HEIGHTxWIDTH of the frames")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    keep_freed_memory()
    height, width = map(int, args.size.split("x"))
    chroma = (height // 2, width // 2)
    b = 8
    torch.manual_seed(0)
    coding = YCbCrCoding("bt709")
    codes = torch.randint(0, 256, (b, 1, height, width)).float()
    y = coding.luma_to_unit(codes)
    L = site_lightness(y, coding, chroma)
    ab = (torch.rand(b, 2, *chroma) - 0.5) * 200
    small = ab[..., ::2, ::2].contiguous()  # ab at about half the chroma size, enlarged
    result: dict[str, object] = {"size": [height, width], "batch": b, "ms_per_frame": {}}
    timed = result["ms_per_frame"]
    assert isinstance(timed, dict)

    timed["Lab to Cb/Cr"] = compare(
        lambda: kornia_lab_to_chroma(L, ab, coding), lambda: lab_to_chroma(L, ab, coding),
        args.rounds, b,
    )  # fmt: skip
    old_L = grey_to_l(F.adaptive_avg_pool2d(y, chroma))
    timed["L at the chroma sites"] = compare(
        lambda: grey_to_l(F.adaptive_avg_pool2d(y, chroma)),
        lambda: site_lightness(y, coding, chroma),
        args.rounds, b,
    )  # fmt: skip
    timed["luma codes to [0, 1]"] = compare(
        lambda: ((codes - 16) / 219).clamp(0, 1),
        lambda: coding.luma_to_unit(codes.clone(), in_place=True),
        args.rounds, b,
    )  # fmt: skip
    enlarged = {
        aa: F.interpolate(small, size=chroma, mode="bilinear", align_corners=False, antialias=aa)
        for aa in (True, False)
    }
    timed["ab enlarged to the chroma size"] = compare(
        lambda: F.interpolate(small, size=chroma, mode="bilinear", antialias=True),
        lambda: F.interpolate(small, size=chroma, mode="bilinear", antialias=False),
        args.rounds, b,
    )  # fmt: skip
    result["code_difference"] = {
        "Lab to Cb/Cr": code_difference(
            kornia_lab_to_chroma(L, ab, coding), lab_to_chroma(L, ab, coding)
        ),
        "L at the chroma sites": code_difference(
            lab_to_chroma(old_L, ab, coding), lab_to_chroma(L, ab, coding)
        ),
    }
    result["ab_enlarged_max_difference"] = float((enlarged[True] - enlarged[False]).abs().max())
    if args.compile:
        start = time.perf_counter()
        compiled = torch.compile(lab_to_chroma, dynamic=False)
        compiled(L, ab, coding)
        result["compile_seconds"] = round(time.perf_counter() - start, 1)
        timed["Lab to Cb/Cr, compiled"] = compare(
            lambda: lab_to_chroma(L, ab, coding), lambda: compiled(L, ab, coding), args.rounds, b
        )

    for name in ("default", "lite0"):  # the generator alone: contiguous, then channels-last
        colouriser = Colouriser.load(name)  # its generator is channels-last
        last = colouriser.generator
        contiguous = copy.deepcopy(last).to(memory_format=torch.contiguous_format)
        x = normalise_l(torch.rand(b, 1, 256, 640) * 100)
        dtype = colouriser.dtype

        def run(g: torch.nn.Module, fmt: torch.memory_format, x=x, dtype=dtype) -> None:  # type: ignore[no-untyped-def]
            with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                g(x.contiguous(memory_format=fmt))

        timed[f"generator {name} at 640x256 (channels-last)"] = compare(
            lambda run=run, g=contiguous: run(g, torch.contiguous_format),
            lambda run=run, g=last: run(g, torch.channels_last),
            args.rounds * 3, b,
        )  # fmt: skip
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
