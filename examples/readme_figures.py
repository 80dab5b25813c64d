"""Make the README's pictures with a model (default: the bundled one).

    python examples/readme_figures.py ../shared/data [--model M]

Writes into docs/images/:
  bikes_before_after.jpg  frame 50 of examples/bikes_grey.mp4: the grey input, the output of
                          `vidcolour run`, the original colour frame
  archive_<name>.jpg      two public-domain archive prints (../shared/data/bw-archive): the
                          print and its colourised version
  archive_all.jpg         all ten prints colourised, two rows of five: the failures too
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from vidcolour import Colouriser
from vidcolour.video.synth import frame_rgb

ROOT = Path(__file__).resolve().parent.parent
ARCHIVE = ("img-french-alpine-landscape__image.jpg", "img-nagasaki-boats__image.jpg")
FRAME = 50  # of the clip
CLIP_START = 125  # the clip is frames 125-224 of bikes.mp4 (examples/make_clip.py)


def side_by_side(images: list[np.ndarray], height: int) -> Image.Image:
    """The images scaled to one height, left to right, 8 px of white between them."""
    scaled = [
        Image.fromarray(a).resize(
            (round(a.shape[1] * height / a.shape[0]), height), Image.Resampling.LANCZOS
        )
        for a in images
    ]
    gap = 8
    canvas = Image.new(
        "RGB", (sum(s.width for s in scaled) + gap * (len(scaled) - 1), height), "white"
    )
    x = 0
    for s in scaled:
        canvas.paste(s, (x, 0))
        x += s.width + gap
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the shared data folder")
    parser.add_argument("--model", default=None, help="default: the bundled model")
    args = parser.parse_args()
    out = ROOT / "docs" / "images"
    out.mkdir(parents=True, exist_ok=True)
    colouriser = Colouriser.load(args.model)

    clip = ROOT / "examples" / "bikes_grey.mp4"
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "colour.mp4"
        colouriser.colourise_video(clip, output)
        panels = [
            frame_rgb(clip, FRAME),
            frame_rgb(output, FRAME),
            frame_rgb(args.data / "video" / "bikes.mp4", CLIP_START + FRAME),
        ]
    side_by_side(panels, 272).save(out / "bikes_before_after.jpg", quality=88)

    coloured = {}
    for path in sorted((args.data / "bw-archive").glob("*.jpg")):
        grey = np.asarray(Image.open(path).convert("L"))
        coloured[path.name] = (grey, colouriser.colourise_image(grey))
    for name in ARCHIVE:
        grey, colour = coloured[name]
        figure = side_by_side([np.repeat(grey[..., None], 3, axis=2), colour], 384)
        figure.save(out / f"archive_{name.split('__')[0].removeprefix('img-')}.jpg", quality=88)
    colours = [colour for _, colour in coloured.values()]
    rows = [side_by_side(colours[i : i + 5], 160) for i in range(0, len(colours), 5)]
    sheet = Image.new(
        "RGB", (max(r.width for r in rows), sum(r.height + 8 for r in rows) - 8), "white"
    )
    for i, row in enumerate(rows):
        sheet.paste(row, (0, i * (160 + 8)))
    sheet.save(out / "archive_all.jpg", quality=85)
    for path in sorted(out.glob("*.jpg")):
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
