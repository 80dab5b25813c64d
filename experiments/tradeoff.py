"""Colour error against colourfulness over every validation of a set of training runs.

    python experiments/tradeoff.py --val ../shared/data/open-photos/val --out models/tradeoff.png \
        E=runs/gan_l1000 F=runs/gan_l2000 L1-only=runs/l1_only ...

Each run's `val` records (metrics.jsonl) from --from-step on are a path through (colourfulness
ratio, ab-L1); the grey baseline's ab-L1 is measured on --val the way the trainer validates
(vidcolour eval's protocol at the runs' image size). The target corner of models/MODEL_CARD.md
(colourfulness ratio >= 0.8 and ab-L1 below grey's) is shaded. Prints, per run, the best ab-L1
among validations at or above the colourfulness target and the highest colourfulness ratio among
validations below grey's ab-L1.
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from vidcolour.data import list_images
from vidcolour.evaluate import Extras, evaluate_candidates, grey_baseline
from vidcolour.plots import read_metrics

CF_TARGET = 0.8

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
parser.add_argument("--val", required=True, help="the runs' validation images")
parser.add_argument("--size", type=int, default=256, help="the runs' train.image_size")
parser.add_argument("--out", type=Path, required=True, help="the plot (.png)")
parser.add_argument(
    "--from-step",
    type=int,
    default=200,
    help="leave out earlier validations (a barely trained generator's noise)",
)
args = parser.parse_args()

grey = evaluate_candidates(
    [grey_baseline()], list_images(args.val), args.size, torch.device("cpu"), Extras()
)["colourisers"][0]["mean"]["ab_l1"]

fig, ax = plt.subplots(figsize=(8, 5.5), constrained_layout=True)
print(f"grey ab-L1 {grey:.2f}")
print(f"{'run':<18} {'validations':>11} {'best ab-L1 at CF >= 0.8':>24} {'best CF below grey':>19}")
for spec in args.runs:
    name, _, run = spec.partition("=")
    records = read_metrics(Path(run))
    val = [r for r in records if r["kind"] == "val" and r["step"] >= args.from_step]
    regression = all(r.get("loss_g_adv") == 0 for r in records if r["kind"] == "train")
    if not val:
        raise SystemExit(f"{run}: no validation records")
    cf = [r["val_colourfulness_ratio"] for r in val]
    l1 = [r["val_ab_l1"] for r in val]
    style = "--o" if regression else "-o"  # L1-only runs dashed
    colour = plt.get_cmap("tab20")(len(ax.lines) // 2 % 20)
    line = ax.plot(cf, l1, style, markersize=3, linewidth=1, label=name, color=colour)[0]
    ax.plot(cf[-1:], l1[-1:], "s", markersize=7, color=line.get_color())
    coloured = [e for c, e in zip(cf, l1, strict=True) if c >= CF_TARGET]
    close = [c for c, e in zip(cf, l1, strict=True) if e < grey]
    best_l1 = f"{min(coloured):.2f}" if coloured else "-"
    best_cf = f"{max(close):.2f}" if close else "-"
    print(f"{name:<18} {len(val):>11} {best_l1:>24} {best_cf:>19}")

left, right, bottom = 0.3, 1.3, 7.5
ax.fill_between([CF_TARGET, right], bottom, grey, color="tab:green", alpha=0.12,
                label="target: CF ratio >= 0.8, ab-L1 below grey")  # fmt: skip
ax.axhline(grey, color="grey", linestyle="--", linewidth=1)
ax.text(left + 0.01, grey + 0.05, f"grey (ab = 0): {grey:.2f}", color="grey", fontsize=8)
ax.axvline(CF_TARGET, color="tab:green", linestyle=":", linewidth=1)
ax.set_xlabel("colourfulness ratio (output / truth)")
ax.set_ylabel("ab-L1 (Lab units, lower is closer to the truth)")
ax.set_xlim(left, right)
ax.set_ylim(bottom, 11.5)
ax.set_title(f"Validations from step {args.from_step} on (square: the run's last; dashed: L1 only)",
             fontsize=10)  # fmt: skip
ax.legend(fontsize=8, loc="upper left")
fig.savefig(args.out, dpi=110)
print(f"wrote {args.out}")
