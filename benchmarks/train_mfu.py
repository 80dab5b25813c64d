"""Training throughput and MFU of the paper-size model on this machine.

    python benchmarks/train_mfu.py --data ../shared/data/open-photos/train [--batch 4] [--steps 26]

Runs `vidcolour train` for a few steps into a temporary run directory and reports img/s and
MFU per logging window, as the trainer logged them: MFU = counted training FLOPs per image x
img/s / the bf16 matmul FLOP/s the trainer measured on this device at start-up. The first
window includes warm-up and is shown but not counted in the median.
Run it on an otherwise idle machine: the start-up matmul reference is measured once.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", required=True)
parser.add_argument("--config", default="ibn_sn_md")
parser.add_argument("--batch", type=int, default=4)
parser.add_argument("--size", type=int, default=256)
parser.add_argument("--steps", type=int, default=26)
parser.add_argument("--window", type=int, default=5)
parser.add_argument("--set", action="append", default=[], help="extra config overrides")
args = parser.parse_args()

with tempfile.TemporaryDirectory() as tmp:
    run = Path(tmp) / "run"
    overrides = [
        f"train.batch_size={args.batch}",
        f"train.image_size={args.size}",
        f"train.log_every={args.window}",
        "train.checkpoint_every=100000",
        *args.set,
    ]
    cmd = [
        sys.executable,
        "-m",
        "vidcolour",
        "train",
        "--config",
        args.config,
        "--data",
        args.data,
        "--out",
        str(run),
        "--max-steps",
        str(args.steps),
        "--device",
        "cpu",
    ]
    for item in overrides:
        cmd += ["--set", item]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    info = json.loads((run / "run.json").read_text())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]

records = [r for r in records if r["kind"] == "train" and "mfu" in r]
print(
    f"device {info['device']}, {info['precision']}, matmul reference "
    f"{info['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s; {args.config}, {args.size} px, "
    f"batch {args.batch}"
)
for r in records:
    print(f"  step {r['step']:4d}  {r['img_per_s']:6.2f} img/s  MFU {r['mfu']:.3f}")
steady = records[1:] or records
print(
    f"median after warm-up: {statistics.median(r['img_per_s'] for r in steady):.2f} img/s, "
    f"MFU {statistics.median(r['mfu'] for r in steady):.3f}"
)
