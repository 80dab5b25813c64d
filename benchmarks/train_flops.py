"""FLOPs per image of one generator training step (forward and backward), with the pretrained
encoder frozen and learning, counted by torch's own FlopCounterMode and by
``vidcolour.nets.flop_counter`` (whose convolution backward counts grouped convolutions right).

    python benchmarks/train_flops.py [--config lite0_unet] [--size 128] [--batch 4]

The generator is built from the config with random weights (the count needs shapes, not
ImageNet's values); prints one line per (encoder, counter).
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from vidcolour.config import load_config
from vidcolour.nets import build_generator, flop_counter
from vidcolour.resources import resolve_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="lite0_unet")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    generator = build_generator(load_config(resolve_config(args.config)).model.generator).train()
    grey = torch.rand(args.batch, 1, args.size, args.size) * 2 - 1
    part = generator.pretrained_part()
    for frozen in (True, False) if part is not None else (False,):
        if part is not None:
            part.requires_grad_(not frozen)
        for name, counter in (
            ("torch's formula", FlopCounterMode(display=False)),
            ("vidcolour", flop_counter()),
        ):
            with counter:
                generator(grey).float().abs().mean().backward()
            generator.zero_grad(set_to_none=True)
            per_image = counter.get_total_flops() / args.batch / 1e9
            state = "no encoder" if part is None else "frozen" if frozen else "learning"
            print(f"{state:10s} {name:15s} {per_image:6.2f} GFLOP/img")


if __name__ == "__main__":
    main()
