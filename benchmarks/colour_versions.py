"""The colour stage's maths now against an earlier revision's, in one run (issue 22).

    python benchmarks/colour_versions.py --before 09bc52e [--size 1080x1920] [--rounds 5]

Loads ``vidcolour/colour.py`` as it was at ``--before`` (``git show``; the module needs
only torch and kornia) beside the current one, and times, batch 8, the two alternated
round by round (median, milliseconds per frame) on 4:2:0 frames: L at the chroma sites and
Lab -> Cb/Cr codes. Also the largest difference between the two versions' results (Lab L;
Cb/Cr codes). Prints one JSON object, with the CPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from vidcolour import colour
from vidcolour.perf import keep_freed_memory

sys.path.insert(0, str(Path(__file__).parent))
from colour_stage import cpu_name
from colour_stage_changes import compare  # before and after, alternated


def colour_at(revision: str, folder: Path) -> ModuleType:
    """vidcolour/colour.py at ``revision``, imported under another name."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "show", f"{revision}:vidcolour/colour.py"],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path = folder / "colour_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("colour_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["colour_before"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def largest(a: object, b: object) -> float:
    pairs = zip(a, b, strict=True) if isinstance(a, tuple) else [(a, b)]
    return float(max((x.float() - y.float()).abs().max() for x, y in pairs))  # type: ignore[union-attr]


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="a git revision of this repository")
    parser.add_argument("--size", default="1080x1920", help="HEIGHTxWIDTH of the frames")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    keep_freed_memory()
    height, width = map(int, args.size.split("x"))
    chroma, b = (height // 2, width // 2), 8
    with tempfile.TemporaryDirectory() as folder:
        old = colour_at(args.before, Path(folder))
    new_coding, old_coding = colour.YCbCrCoding("bt709"), old.YCbCrCoding("bt709")
    rng = np.random.default_rng(0)
    luma = rng.integers(0, 256, (b, height, width)).astype(np.uint8)
    y = new_coding.luma_to_unit(torch.from_numpy(luma).float()).unsqueeze(1)
    L = colour.site_lightness(y, new_coding, chroma)
    ab = torch.from_numpy(rng.uniform(-100, 100, (b, 2, *chroma))).float()

    pieces: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "L at the chroma sites": (
            lambda: old.site_lightness(y, old_coding, chroma),
            lambda: colour.site_lightness(y, new_coding, chroma),
        ),
        "Lab to Cb/Cr codes": (
            lambda: old.lab_to_chroma(L, ab, old_coding),
            lambda: colour.lab_to_chroma(L, ab, new_coding),
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
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
