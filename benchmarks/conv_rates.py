"""Single convolutions of the generators' shapes against the bf16 matmul reference: how close
one layer comes to the rate MFU is measured against (issue 22, goal 2).

    python benchmarks/conv_rates.py [--batch 8] [--seconds 1]

Each layer alone, channels-last, bf16 autocast where the CPU runs bf16 natively, inference mode,
the best of repeated timings over --seconds, at the input sizes the paper-width generator
(`ibn_sn_md`, 256x384 working size) and the bundled one see. Prints TFLOP/s and its share of
the reference (`vidcolour.perf.matmul_flops_per_s`) per layer, and the CPU.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from colour_stage import cpu_name  # benchmarks/, the script's own folder
from torch import nn

from vidcolour.devices import autocast_dtype
from vidcolour.nets import count_flops
from vidcolour.perf import matmul_flops_per_s

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--batch", type=int, default=8)
parser.add_argument("--seconds", type=float, default=1.0, help="per layer")
args = parser.parse_args()

# (name, layer, input channels, input height, input width)
LAYERS = [
    ("first conv 1->64 (paper)", nn.Conv2d(1, 64, 4, 2, 1), 1, 256, 384),
    ("conv 64->128, 4x4 s2 (paper)", nn.Conv2d(64, 128, 4, 2, 1), 64, 128, 192),
    ("conv 256->512, 4x4 s2 (paper)", nn.Conv2d(256, 512, 4, 2, 1), 256, 32, 48),
    ("up-conv 1024->256, 4x4 s2 (paper)", nn.ConvTranspose2d(1024, 256, 4, 2, 1), 1024, 16, 24),
    ("up-conv 256->64, 4x4 s2 (paper)", nn.ConvTranspose2d(256, 64, 4, 2, 1), 256, 64, 96),
    ("conv 32->64, 4x4 s2 (bundled)", nn.Conv2d(32, 64, 4, 2, 1), 32, 128, 192),
    ("up-conv 128->32, 4x4 s2 (bundled)", nn.ConvTranspose2d(128, 32, 4, 2, 1), 128, 64, 96),
    ("conv 256->256, 3x3 s1 (a wide plain conv)", nn.Conv2d(256, 256, 3, 1, 1), 256, 64, 96),
]

device = torch.device("cpu")
dtype = autocast_dtype(device, "auto")
reference = matmul_flops_per_s(device, dtype or torch.float32)
result: dict[str, object] = {
    "cpu": cpu_name(),
    "threads": torch.get_num_threads(),
    "precision": str(dtype or torch.float32),
    "matmul_tflops": round(reference / 1e12, 3),
}
for name, layer, channels, height, width in LAYERS:
    layer = layer.eval().to(memory_format=torch.channels_last)
    x = torch.randn(args.batch, channels, height, width).contiguous(
        memory_format=torch.channels_last
    )
    flops = count_flops(layer, x)
    best = float("inf")
    with (
        torch.inference_mode(),
        torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None),
    ):
        layer(x)  # warm-up: oneDNN's primitive for this shape
        deadline = time.perf_counter() + args.seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            layer(x)
            best = min(best, time.perf_counter() - start)
    result[name] = {
        "tflops": round(flops / best / 1e12, 3),
        "share": round(flops / best / reference, 3),
    }
print(json.dumps(result, indent=1))
