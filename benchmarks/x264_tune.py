"""Luma fidelity and size of h264 output with and without x264's tune=grain (docs/VIDEO.md).

    python benchmarks/x264_tune.py --input ../shared/data/video/bikes.mp4

Makes a lossless greyscale copy of the input, colourises it with an untrained tiny generator
(the luma error is the encoder's alone, so the model does not matter), and reports the luma PSNR
against the grey copy and the file size for each tune at crf 18, preset veryfast.
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
        for tune in ("none", "grain"):
            out = Path(scratch) / f"{tune}.mp4"
            colouriser.colourise_video(grey, out, tune=tune)
            mse = np.mean(
                [np.mean((a - b) ** 2) for a, b in zip(reference, lumas(out), strict=True)]
            )
            psnr = 10 * np.log10(255**2 / mse)
            print(f"tune {tune:5s}: luma PSNR {psnr:.2f} dB, {out.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
