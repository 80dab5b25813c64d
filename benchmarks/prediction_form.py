"""The generator alone in the form a weights file stores (SN and BN folded) against the form it
predicts in (``fold_for_prediction``: each IBN's batch-norm half folded too and its
instance-norm half written back in the activations' dtype; the head's transposed convolution
as one convolution to its four phases; a conv and the clamp after it as one oneDNN call), as
`vidcolour run` predicts (issue 22, goal 2). With --baseline unfused the other form is the
predicting one without that last step (``fuse_activations``): what the fused calls alone buy.

    python benchmarks/prediction_form.py [--model default] [--size 256x384] [--batch 8]
        [--rounds 7] [--compile] [--baseline stored|unfused]

Channels-last, bf16 autocast where the CPU runs bf16 natively, inference mode, batches of
--batch at the working size (--compile: each form under `torch.compile` with weight freezing,
as `run --compile` predicts); the two forms' rounds alternate, so both see the same machine.
Prints the median milliseconds per frame of each, their FLOP/s over the bf16 matmul rate
measured in the same run (MFU), the largest difference between their outputs (ab units,
+-110 full scale) and the CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from colour_stage import cpu_name  # benchmarks/, the script's own folder

from vidcolour.colour import AB_SCALE
from vidcolour.devices import autocast_dtype
from vidcolour.model_files import open_model
from vidcolour.nets import ConvAct, InstanceHalf, PhaseConvTranspose, count_flops
from vidcolour.nets.fold import fold_for_inference, fold_ibn, fold_narrow_transposed
from vidcolour.perf import keep_freed_memory, matmul_flops_per_s
from vidcolour.weights import load_generator

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", default="default")
parser.add_argument("--size", default="256x384", help="HxW, the working size")
parser.add_argument("--batch", type=int, default=8)
parser.add_argument("--rounds", type=int, default=7)
parser.add_argument("--compile", action="store_true", help="compare the forms compiled")
parser.add_argument(
    "--baseline",
    choices=("stored", "unfused"),
    default="stored",
    help="the form to compare with: as stored, or predicting without the fused calls",
)
args = parser.parse_args()

height, width = map(int, args.size.split("x"))
device = torch.device("cpu")
dtype = autocast_dtype(device, "auto")
keep_freed_memory()  # as Colouriser.load does for run: large freed blocks kept, not re-faulted
found = open_model(args.model)  # a weights file (the bundled models are)
base = args.baseline
stored = fold_for_inference(load_generator(found.path)[0])
forms = {
    base: stored if base == "stored" else fold_narrow_transposed(fold_ibn(stored)),
    "predicting": found.generator,
}
further = (ConvAct,) if base == "unfused" else (InstanceHalf, PhaseConvTranspose, ConvAct)
if not any(isinstance(m, further) for m in forms["predicting"].modules()):
    raise SystemExit(f"{args.model} folds no further for prediction: both forms are the same")
for name, generator in forms.items():
    forms[name] = generator.to(memory_format=torch.channels_last).eval()
l = (torch.rand(args.batch, 1, height, width) * 2 - 1).contiguous(memory_format=torch.channels_last)
flops_per_frame = count_flops(forms[base], l[:1])
if args.compile:  # as predict.CompiledGenerator compiles: weights frozen as constants
    forms = {k: torch.compile(g, options={"freezing": True}) for k, g in forms.items()}


@torch.inference_mode()
def run(generator: torch.nn.Module) -> tuple[float, torch.Tensor]:
    autocast = torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None)
    with autocast:
        start = time.perf_counter()
        ab = generator(l)
        return (time.perf_counter() - start) / args.batch * 1000, ab.float()


outputs = {name: run(generator)[1] for name, generator in forms.items()}  # and warm-up
times: dict[str, list[float]] = {name: [] for name in forms}
for _ in range(args.rounds):
    for name, generator in forms.items():
        times[name].append(run(generator)[0])
matmul = matmul_flops_per_s(device, dtype or torch.float32)

result = {
    "cpu": cpu_name(),
    "threads": torch.get_num_threads(),
    "model": args.model,
    "size": [height, width],
    "batch": args.batch,
    "precision": str(dtype or torch.float32),
    "compiled": args.compile,
    "baseline": base,
    "gflop_per_frame": flops_per_frame / 1e9,
    "matmul_tflops": matmul / 1e12,
}
for name, values in times.items():
    ms = statistics.median(values)
    result[f"{name}_ms_per_frame"] = ms
    result[f"{name}_ms_range"] = [min(values), max(values)]
    result[f"{name}_mfu"] = flops_per_frame / (ms / 1000) / matmul
result["speedup"] = result[f"{base}_ms_per_frame"] / result["predicting_ms_per_frame"]
difference = (outputs[base] - outputs["predicting"]).abs().max().item()
result["max_ab_difference"] = difference * AB_SCALE
print(json.dumps(result, indent=1))
