"""Reproduce the paper's Table I (and Fig. 3, Fig. 4) at a budget a 2-core CPU affords.

    python experiments/table1.py --data ../shared/data/open-photos --out runs/table1

Trains the six Table I configurations plus an L1-only regression model (the same generator
trained without a discriminator) on DATA/train, evaluates them with the grey and mean baselines
on DATA/val through `vidcolour eval`, and writes OUT/table1.json, OUT/table1.md (the table in
docs/RESULTS.md) and the plots. Extra seeds of two configurations measure run-to-run spread.
Runs that already finished are kept (delete OUT to start over).
"""

import argparse
import json
from pathlib import Path

from common import markdown_table, vidcolour
from common import train as run_training

CONFIGS = ["bn", "in", "bn_sn", "in_sn", "bn_sn_md", "ibn_sn_md"]
L1_ONLY = ("l1_only", "bn", ["loss.gan=none"])
SPREAD = {"bn": [1, 2], "ibn_sn_md": [1, 2]}  # extra seeds

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", type=Path, required=True, help="folder with train/ and val/")
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--epochs", type=int, default=40)
parser.add_argument("--size", type=int, default=128)
parser.add_argument("--width", type=int, default=16, help="ngf = ndf")
parser.add_argument("--depth", type=int, default=6, help="6 at 128 px: the paper's 2x2 bottleneck")
parser.add_argument("--batch", type=int, default=16)
parser.add_argument("--device", default="auto")
args = parser.parse_args()

BUDGET = [
    f"train.epochs={args.epochs}",
    f"train.image_size={args.size}",
    f"train.batch_size={args.batch}",
    f"model.generator.ngf={args.width}",
    f"model.generator.depth={args.depth}",
    f"model.discriminator.ndf={args.width}",
    "train.log_every=5",
    "train.checkpoint_every=200",
    "train.keep_checkpoints=1",
    "train.val_every=0",
]


def train(name: str, config: str, extra: list[str], seed: int) -> Path:
    run = args.out / "runs" / (name if seed == 0 else f"{name}-seed{seed}")
    if (run / "curves.png").exists():
        return run  # finished earlier
    return run_training(config, args.data, run, args.device,
                        [*BUDGET, f"train.seed={seed}", *extra])  # fmt: skip


def evaluate(runs: list[Path], out: Path, plots: Path | None) -> dict:
    cli = ["eval", "--data", str(args.data / "val"), "--size", str(args.size), "--json", str(out),
           "--baseline", "grey", "--baseline", "mean", "--device", args.device]  # fmt: skip
    for run in runs:
        cli += ["--model", str(run)]
    if plots is not None:
        cli += ["--plots", str(plots)]
    vidcolour(*cli)
    return json.loads(out.read_text())


args.out.mkdir(parents=True, exist_ok=True)
main_runs = [train(name, name, [], 0) for name in CONFIGS]
main_runs.append(train(L1_ONLY[0], L1_ONLY[1], L1_ONLY[2], 0))
seed_runs = {name: [train(name, name, [], s) for s in seeds] for name, seeds in SPREAD.items()}

table = evaluate(main_runs, args.out / "table1.json", args.out / "plots")
spread = evaluate([r for rs in seed_runs.values() for r in rs], args.out / "seeds.json", None)

lines = markdown_table(table)
lines += ["", "Run-to-run spread (seeds 0, 1, 2; min - max):", "",
          "| config | ab-L1 | CF ratio | hist overlap |", "|---|---:|---:|---:|"]  # fmt: skip
by_name = {c["name"]: c["mean"] for c in table["colourisers"] + spread["colourisers"]}
for name, seeds in SPREAD.items():
    values = [by_name[name]] + [by_name[f"{name}-seed{s}"] for s in seeds]
    cells = []
    for key in ("ab_l1", "colourfulness_ratio", "dataset_hist_overlap"):
        vs = [v[key] for v in values]
        cells.append(f"{min(vs):.3f} - {max(vs):.3f}")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
(args.out / "table1.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
