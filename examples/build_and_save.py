"""Build a generator from a shipped config, save it with its config, load it back.

    python examples/build_and_save.py /tmp/tiny.safetensors

The weights file carries the config that built the network, so loading needs nothing else.
A real model comes from `vidcolour train`; this one has random weights.
"""

import sys

import torch

from vidcolour.config import load_config
from vidcolour.nets import build_generator, count_params, fold_for_inference
from vidcolour.resources import resolve_config
from vidcolour.weights import load_generator, save_generator

path = sys.argv[1] if len(sys.argv) > 1 else "tiny.safetensors"

# The paper's IBN + SN + MD recipe at 1/8 of the width.
config = load_config(resolve_config("ibn_sn_md"), ["model.generator.ngf=8"])
generator = build_generator(config.model.generator)
print(f"{config.name}: {count_params(generator) / 1e6:.2f} M parameters")

# Inference weights: spectral norm and batch-norm statistics folded into the convs.
fold_for_inference(generator)
save_generator(path, generator, name="tiny-random", half=True)

loaded, info = load_generator(path)
print(f"loaded '{info.name}' ({info.config.norm}, folded: {', '.join(info.folded)})")

l = torch.rand(1, 1, 256, 256) * 2 - 1  # L / 50 - 1 of a 256x256 greyscale image
with torch.inference_mode():
    ab = loaded(l)  # ab / 110, same size
print(f"L {tuple(l.shape)} -> ab {tuple(ab.shape)}, range [{ab.min():.2f}, {ab.max():.2f}]")
