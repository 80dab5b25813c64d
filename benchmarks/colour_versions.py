"""The per-frame maths now against an earlier revision's, in one run (issue 22).

    python benchmarks/colour_versions.py --before 09bc52e [--size 1080x1920] [--rounds 5] [--ops]
        [--clip video.mp4 ...] [--grain 8]

Loads ``vidcolour/colour.py`` and ``vidcolour/video/shots.py`` as they were at ``--before``
(``git show``; the modules need only torch, kornia, OpenCV and the current package) beside the
current ones, and times, batch 8, the two alternated round by round (median, milliseconds per
frame) on 4:2:0 frames: L at the chroma sites, Lab -> Cb/Cr codes, L at the working size
(``grey_to_l``, 256 px high, the width in proportion) and the shot detector's signature of a
luma plane; also the largest difference between the two versions' results (Lab L; Cb/Cr
codes; signature values). --ops adds why the old form was slow: single ops, pooling, piece
sizes. Each --clip is decoded and its signatures made both ways (with --grain, after adding
grain): the largest change of a distance between neighbouring frames, the median distance,
and the cuts each version finds. Prints one JSON object, with the CPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import av
import numpy as np
import torch
import torch.nn.functional as F

from vidcolour import colour
from vidcolour.perf import keep_freed_memory
from vidcolour.predict import resize
from vidcolour.video import shots

sys.path.insert(0, str(Path(__file__).parent))
from colour_stage import cpu_name
from colour_stage_changes import compare  # before and after, alternated


def module_at(revision: str, source_path: str, folder: Path) -> ModuleType:
    """The repository's file ``source_path`` (a module) at ``revision``, imported under
    another name."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "show", f"{revision}:{source_path}"],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    name = f"{Path(source_path).stem}_before"
    path = folder / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def clip_lumas(path: Path) -> list[np.ndarray]:
    """Every frame's Y' plane (8-bit video), in decoding order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.format is None or stream.format.components[0].bits != 8:
            raise SystemExit(f"{path}: --clip takes 8-bit video")
        return [
            np.frombuffer(frame.planes[0], np.uint8)
            .reshape(frame.height, frame.planes[0].line_size)[:, : frame.width]
            .copy()
            for frame in container.decode(stream)
        ]


def clip_changes(old: ModuleType, path: Path, grain: float) -> dict[str, object]:
    """How the signature's change moves a real clip's distances and cuts (``grain``: Gaussian
    noise of that many codes added to every frame first)."""
    lumas = clip_lumas(path)
    if grain:
        rng = np.random.default_rng(0)
        lumas = [np.clip(y + rng.normal(0, grain, y.shape), 0, 255).astype(np.uint8) for y in lumas]
    before = [old.signature(y) for y in lumas]
    after = [shots.signature(y) for y in lumas]
    d_before, d_after = (
        np.array([shots.distance(s[i], s[i - 1]) for i in range(1, len(s))])
        for s in (before, after)
    )
    return {
        "frames": len(lumas),
        "size": list(lumas[0].shape),
        "largest distance change": round(float(np.abs(d_after - d_before).max()), 5),
        "median distance before, after": [
            round(float(np.median(d)), 4) for d in (d_before, d_after)
        ],
        "cuts before": old.cuts_of(before),
        "cuts after": shots.cuts_of(after),
    }


def largest(a: object, b: object) -> float:
    pairs = zip(a, b, strict=True) if isinstance(a, tuple | list) else [(a, b)]
    return float(max((x.float() - y.float()).abs().max() for x, y in pairs))  # type: ignore[union-attr]


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="a git revision of this repository")
    parser.add_argument("--size", default="1080x1920", help="HEIGHTxWIDTH of the frames")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--ops",
        action="store_true",
        help="also: single ops on one frame's three chroma planes, the avg_pool2d the block "
        "sums replace, and lab_to_chroma by piece size",
    )
    parser.add_argument("--clip", type=Path, action="append", default=[], help="repeatable")
    parser.add_argument(
        "--grain",
        type=float,
        default=0.0,
        help="add Gaussian grain of this many codes (seeded) to the clips' luma, as old film has",
    )
    args = parser.parse_args()
    keep_freed_memory()
    height, width = map(int, args.size.split("x"))
    chroma, b = (height // 2, width // 2), 8
    with tempfile.TemporaryDirectory() as folder:
        old = module_at(args.before, "vidcolour/colour.py", Path(folder))
        old_shots = module_at(args.before, "vidcolour/video/shots.py", Path(folder))
    new_coding, old_coding = colour.YCbCrCoding("bt709"), old.YCbCrCoding("bt709")
    rng = np.random.default_rng(0)
    luma = rng.integers(0, 256, (b, height, width)).astype(np.uint8)
    y = new_coding.luma_to_unit(torch.from_numpy(luma).float()).unsqueeze(1)
    L = colour.site_lightness(y, new_coding, chroma)
    ab = torch.from_numpy(rng.uniform(-100, 100, (b, 2, *chroma))).float()
    y_work = resize(y, (256, max(1, round(256 * width / height))))

    pieces: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "L at the chroma sites": (
            lambda: old.site_lightness(y, old_coding, chroma),
            lambda: colour.site_lightness(y, new_coding, chroma),
        ),
        "Lab to Cb/Cr codes": (
            lambda: old.lab_to_chroma(L, ab, old_coding),
            lambda: colour.lab_to_chroma(L, ab, new_coding),
        ),
        "L at the working size": (lambda: old.grey_to_l(y_work), lambda: colour.grey_to_l(y_work)),
        "shot signature": (
            lambda: [torch.from_numpy(old_shots.signature(plane)) for plane in luma],
            lambda: [torch.from_numpy(shots.signature(plane)) for plane in luma],
        ),
    }
    result = {
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "before": args.before,
        "size": [height, width],
        "batch": b,
        "ms_per_frame": {k: compare(*v, args.rounds, b) for k, v in pieces.items()},
        "largest_difference": {k: largest(v[0](), v[1]()) for k, v in pieces.items()},
    }
    if args.ops:
        result["ops_ms"] = ops(y, L, ab, new_coding, args.rounds)
    if args.clip:
        result["grain"] = args.grain
        result["clips"] = {
            str(path): clip_changes(old_shots, path, args.grain) for path in args.clip
        }
    print(json.dumps(result, indent=1))


def ops(
    y: torch.Tensor, L: torch.Tensor, ab: torch.Tensor, coding: object, rounds: int
) -> dict[str, object]:
    """Why the colour maths was slow eager, in milliseconds (median of ``rounds``): single ops
    over one frame's three chroma planes; a 2x2 ``avg_pool2d`` of the batch's luma against
    ``colour._block_sum`` (a frame); ``lab_to_chroma`` a frame by piece size (sites; 0: the
    batch whole)."""
    x = torch.cat([L[:1], ab[:1]], 1).abs_().add_(0.1)  # (1, 3, h, w), positive
    m = torch.randn(3, 3)
    single: dict[str, Callable[[], object]] = {
        "add": lambda: x + 1,
        "where": lambda: torch.where(x > 50, x, x),
        "compare": lambda: x > 50,
        "einsum 3x3": lambda: torch.einsum("ij,bjhw->bihw", m, x),
        "pow 1/2.4": lambda: x.pow(1 / 2.4),
    }
    frames = y.shape[0]
    result: dict[str, object] = {k: median_ms(v, rounds) for k, v in single.items()}
    result["avg_pool2d 2x2 a frame"] = median_ms(lambda: F.avg_pool2d(y, 2), rounds) / frames
    result["block sums 2x2 a frame"] = (
        median_ms(lambda: colour._block_sum(y, (2, 2)), rounds) / frames
    )
    by_size = {}
    for sites in (2**15, 2**17, 2**18, 2**19, 0):
        colour._PIECE_SITES = sites or 10**12
        by_size[str(sites)] = (
            median_ms(lambda: colour.lab_to_chroma(L, ab, coding), rounds) / frames
        )
    colour._PIECE_SITES = 2**18
    result["lab_to_chroma a frame, by piece sites"] = by_size
    return result


def median_ms(work: Callable[[], object], rounds: int) -> float:
    work()  # warm up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 3)


if __name__ == "__main__":
    main()
