"""Luma fidelity and size of h264 output with and without x264's tune=grain, and of .avi's
mpeg4 and of ffv1 beside them (docs/VIDEO.md).

    python benchmarks/x264_tune.py --input ../shared/data/video/bikes.mp4

Makes a lossless greyscale copy of the input, colourises it with an untrained tiny generator
(the luma error is the encoder's alone, so the model does not matter), and reports the luma PSNR
against the grey copy and the file size for each tune at crf 18, preset veryfast; then for mpeg4
in .avi (its fixed settings) and lossless ffv1 in .mkv.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import av
import numpy as np

from vidcolour import Colouriser
from vidcolour.config import GeneratorConfig
from vidcolour.nets import build_generator
from vidcolour.video.synth import grey_copy


def lumas(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [  # the Y' plane's own codes (a conversion to "gray" would rescale them)
            np.frombuffer(f.planes[0], np.uint8).reshape(f.height, -1)[:, : f.width].astype(float)
            for f in container.decode(video=0)
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True)
    args = parser.parse_args()
    colouriser = Colouriser(build_generator(GeneratorConfig(ngf=4, depth=4)), resolution=64)
    with tempfile.TemporaryDirectory() as scratch:
        grey = Path(scratch) / "grey.mkv"
        grey_copy(args.input, grey)
        reference = lumas(grey)
        runs = [(f"tune {t:5s}", f"{t}.mp4", {"tune": t}) for t in ("none", "grain")]
        runs += [("mpeg4 .avi", "out.avi", {}), ("ffv1 .mkv ", "out.mkv", {"codec": "ffv1"})]
        for label, name, options in runs:
            out = Path(scratch) / name
            colouriser.colourise_video(grey, out, **options)
            mse = np.mean(
                [np.mean((a - b) ** 2) for a, b in zip(reference, lumas(out), strict=True)]
            )
            psnr = 10 * np.log10(255**2 / mse) if mse else float("inf")
            print(f"{label}: luma PSNR {psnr:.2f} dB, {out.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
