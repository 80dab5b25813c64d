"""How strongly a feature loss and a colourfulness loss pull on the generator's output, against
lambda x L1's pull: the norms of the terms' gradients with respect to ab, for one model's output
on training photos (experiments/pretrained_search.md, rounds 3 and 6).

    python experiments/feature_calibration.py --data ../shared/data/open-photos/train \
        --model models/lite0.safetensors

Photos: a seeded sample of DATA, short side to 256, the top-left 256x256 square. Prints, for
the model's ab, for grey and for the model's ab x 1.3: the feature distance (mean over the
taps, and per tap), lambda x L1, the colourfulness shortfall (loss.colourfulness_weight's
term), and the gradient norm of each with respect to ab.
"""

import argparse
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vidcolour.colour import model_to_rgb, rgb_to_model
from vidcolour.data import list_images
from vidcolour.losses import colourfulness_shortfall
from vidcolour.model_files import open_model
from vidcolour.perceptual import ImageNetLite, feature_l1

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", required=True, help="a folder of photos or a list file")
parser.add_argument("--model", required=True, help="anything `vidcolour run --model` takes")
parser.add_argument("--net", default="lite1", choices=["lite0", "lite1", "lite2"])
parser.add_argument("--l1-weight", type=float, default=1000.0)
parser.add_argument("--taps", type=int, default=5, help="the deepest N taps, as loss.feature_taps")
parser.add_argument("--images", type=int, default=16)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()


def square(path: Path, size: int = 256) -> torch.Tensor:
    image = Image.open(path).convert("RGB")
    scale = size / min(image.size)
    w, h = (max(size, round(side * scale)) for side in image.size)
    pixels = np.asarray(image.resize((w, h), Image.Resampling.BICUBIC))[:size, :size]
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)  # (3, size, size) uint8


paths = sorted(list_images(args.data))
random.Random(args.seed).shuffle(paths)
rgb = torch.stack([square(p) for p in paths[: args.images]]).float() / 255
l, ab = rgb_to_model(rgb)
generator = open_model(args.model).generator
with torch.inference_mode():
    predicted = generator(l).float()
net = ImageNetLite.load_variant(args.net)
with torch.no_grad():
    truth, _, _ = net(rgb)

for name, start in (("model", predicted), ("grey", torch.zeros_like(ab)), ("model x 1.3",
                    predicted * 1.3)):  # fmt: skip
    x = start.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mine, _, _ = net(model_to_rgb(l, x))
    feature = feature_l1(mine[-args.taps :], truth[-args.taps :]).mean()
    (feature_grad,) = torch.autograd.grad(feature, x)
    y = start.clone().requires_grad_(True)
    l1 = args.l1_weight * (y - ab).abs().mean()
    (l1_grad,) = torch.autograd.grad(l1, y)
    z = start.clone().requires_grad_(True)
    shortfall = colourfulness_shortfall(model_to_rgb(l, z), rgb)
    (shortfall_grad,) = torch.autograd.grad(shortfall, z)
    taps = " ".join(f"{(m.float() - t).abs().mean():.3f}" for m, t in zip(mine, truth, strict=True))
    print(
        f"{name:12s} feature {feature:.3f} (taps {taps})  |grad| {feature_grad.norm():.3f}   "
        f"lambda x L1 {l1:.2f}  |grad| {l1_grad.norm():.3f}   "
        f"colour shortfall {shortfall:.4f}  |grad| {shortfall_grad.norm():.4f}"
    )
