"""The generator alone, eager against `torch.compile` (Inductor with weight freezing), and
each one's share of the bf16 matmul rate measured in the same run (issue 22, goal 2).

    python benchmarks/generator_compile.py [--model default] [--size 256x384] [--batch 8]
        [--rounds 5] [--profile] [--form stored] [--config ibn_sn_md] [--eager-only]
        [--malloc-default]

As `vidcolour run` predicts: the generator in its prediction form (--form stored: as a
weights file stores it, without that form's further folds; benchmarks/prediction_form.py), in
channels-last memory, bf16 autocast where the CPU runs bf16 natively, inference mode, batches
of --batch at the working size, malloc keeping large freed blocks (--malloc-default: not).
Eager and compiled rounds alternate, so both see the same machine; prints the compile time, the
median milliseconds per frame of each, their FLOP/s over the matmul rate (MFU), and the CPU.
Compiling needs a C++ compiler on a CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from colour_stage import cpu_name  # benchmarks/, the script's own folder

from vidcolour.config import load_config
from vidcolour.devices import autocast_dtype
from vidcolour.model_files import open_model
from vidcolour.nets import build_generator, count_flops, fold_for_inference, fold_for_prediction
from vidcolour.perf import keep_freed_memory, matmul_flops_per_s
from vidcolour.resources import resolve_config
from vidcolour.weights import load_generator

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", default="default")
parser.add_argument(
    "--config", help="instead of --model: a config's generator, random weights (the same cost)"
)
parser.add_argument("--size", default="256x384", help="HxW, the working size")
parser.add_argument("--batch", type=int, default=8)
parser.add_argument("--rounds", type=int, default=5)
parser.add_argument("--form", choices=("predicting", "stored"), default="predicting")
parser.add_argument(
    "--profile", action="store_true", help="also print where each one's time goes, per op"
)
parser.add_argument(
    "--eager-only", action="store_true", help="no compiling: eager rounds alone, back to back"
)
parser.add_argument(
    "--malloc-default",
    action="store_true",
    help="leave glibc's malloc as it is (run keeps large freed blocks: perf.keep_freed_memory)",
)
args = parser.parse_args()

height, width = map(int, args.size.split("x"))
device = torch.device("cpu")
dtype = autocast_dtype(device, "auto")
if not args.malloc_default:
    keep_freed_memory()  # as Colouriser.load does for run: large freed blocks kept, not re-faulted
if args.config:  # as a weights file would hold it: SN and BN folded; then as run predicts
    generator = fold_for_inference(
        build_generator(load_config(resolve_config(args.config)).model.generator)
    )
    if args.form == "predicting":
        generator = fold_for_prediction(generator)
else:
    found = open_model(args.model)
    generator = found.generator
    if args.form == "stored":  # a weights file's generator, SN and BN folded and no further
        generator = fold_for_inference(load_generator(found.path)[0])
generator = generator.to(memory_format=torch.channels_last)
l = (torch.rand(args.batch, 1, height, width) * 2 - 1).contiguous(memory_format=torch.channels_last)
flops_per_frame = count_flops(generator, l[:1])


def autocast() -> torch.autocast:
    return torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None)


def ms_per_frame(forward) -> float:
    with torch.inference_mode(), autocast():
        start = time.perf_counter()
        forward(l)
        return (time.perf_counter() - start) / args.batch * 1000


import torch._inductor.config as inductor_config  # noqa: E402  (only where compiling)

inductor_config.freezing = True  # weights as constants: oneDNN packs them, fuses conv + act
inductor_config.cpp.enable_kernel_profile = args.profile  # name Inductor's kernels in a profile
forms = {"eager": generator}
compile_s = None
if not args.eager_only:
    forms["compiled"] = compiled = torch.compile(generator)
    start = time.perf_counter()
    ms_per_frame(compiled)
    compile_s = time.perf_counter() - start
ms_per_frame(generator)  # warm-up
times: dict[str, list[float]] = {name: [] for name in forms}
for _ in range(args.rounds):
    for name, forward in forms.items():
        times[name].append(ms_per_frame(forward))
matmul = matmul_flops_per_s(device, dtype or torch.float32)

cpu = cpu_name()
result = {
    "cpu": cpu,
    "threads": torch.get_num_threads(),
    "model": f"config {args.config}, random weights" if args.config else args.model,
    "form": args.form,
    "size": [height, width],
    "batch": args.batch,
    "precision": str(dtype or torch.float32),
    "gflop_per_frame": flops_per_frame / 1e9,
    "matmul_tflops": matmul / 1e12,
    "compile_s": compile_s,
}
for name, values in times.items():
    ms = statistics.median(values)
    result[f"{name}_ms_per_frame"] = ms
    result[f"{name}_mfu"] = flops_per_frame / (ms / 1000) / matmul
    result[f"{name}_ms_by_round"] = [round(v, 2) for v in values]
if "compiled" in times:
    result["compiled_speedup"] = result["eager_ms_per_frame"] / result["compiled_ms_per_frame"]
print(json.dumps(result, indent=1))


def print_profile(name: str, forward) -> None:
    """The ops (Inductor's kernels by name) that took the most of three batches' time."""
    with torch.profiler.profile(record_shapes=True) as profile:
        for _ in range(3):
            ms_per_frame(forward)
    events = profile.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"\n{name}: {total / 3000:.1f} ms a batch of {args.batch}, profiled; share, op, shapes")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:15]:
        shapes = [s for s in e.input_shapes if s][:2]
        print(f"{e.self_cpu_time_total / total:6.1%}  {e.key[:72]:72s} {shapes}")


if args.profile:
    for name, forward in forms.items():
        print_profile(name, forward)
