"""Colour error and colourfulness of a model whose chroma is scaled by each of a set of gains.

    python experiments/chroma_gain.py --model runs/bundled --data runs/calib.txt \
        --gains 1.0,1.1,1.2,1.3 --plot gain.png

A generator trained with an L1 term predicts a compromise where the true colour is uncertain,
which is greyer than the truth (the colourfulness ratio below 1); multiplying its ab by a gain
trades ab-L1 for colour, as the annealed mean's temperature does in Zhang et al. 2016. Each gain
is measured with `vidcolour eval`'s protocol on --data (a folder or a list file), beside the grey
baseline. models/MODEL_CARD.md ("A chroma gain") has what it found.
"""

import argparse
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from vidcolour.data import list_images
from vidcolour.devices import autocast_dtype
from vidcolour.evaluate import Extras, evaluate_candidates, grey_baseline, load_candidate

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", required=True, help="weights, checkpoint or run directory")
parser.add_argument("--data", required=True, help="colour images: a folder or a list file")
parser.add_argument("--gains", default="1.0,1.1,1.2,1.3,1.4", help="comma-separated")
parser.add_argument("--size", type=int, default=256)
parser.add_argument("--plot", type=Path, help="ab-L1 against colourfulness ratio (.png)")
args = parser.parse_args()

cpu = torch.device("cpu")
model = load_candidate(args.model, cpu, args.size, autocast_dtype(cpu, "auto"))  # as eval predicts
gains = [float(g) for g in args.gains.split(",")]
scaled = [
    replace(model, name=f"x{g:g}", predict=lambda l, g=g: model.predict(l) * g) for g in gains
]
result = evaluate_candidates(
    [grey_baseline(), *scaled], list_images(args.data), args.size, cpu, Extras(), samples=0
)
grey, *rows = (c["mean"] for c in result["colourisers"])
print(f"{result['dataset']['images']} images of {args.data}; grey: ab-L1 {grey['ab_l1']:.2f}")
print("| gain | ab-L1 | CF ratio | hist overlap (per image / pooled) |")
print("| ---: | ---: | ---: | --- |")
for g, m in zip(gains, rows, strict=True):
    print(f"| {g:g} | {m['ab_l1']:.2f} | {m['colourfulness_ratio']:.2f} | "
          f"{m['hist_overlap']:.3f} / {m['dataset_hist_overlap']:.3f} |")  # fmt: skip

if args.plot:
    fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    ax.plot([m["colourfulness_ratio"] for m in rows], [m["ab_l1"] for m in rows], "o-")
    for g, m in zip(gains, rows, strict=True):
        ax.annotate(f"x{g:g}", (m["colourfulness_ratio"], m["ab_l1"]), fontsize=8,
                    textcoords="offset points", xytext=(4, -10))  # fmt: skip
    ax.axhline(grey["ab_l1"], color="grey", ls="--", label=f"grey: {grey['ab_l1']:.2f}")
    ax.set_xlabel("colourfulness ratio (output / truth)")
    ax.set_ylabel("ab-L1 (Lab units)")
    ax.set_title(f"{args.model}: chroma gain on {args.data}", fontsize=9)
    ax.legend(fontsize=8)
    fig.savefig(args.plot, dpi=110)
    print(f"wrote {args.plot}")
