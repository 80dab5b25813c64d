"""Measure the pretrained-encoder search's runs against the shipped models, one `vidcolour eval`
run per validation set, and print the card's tables (experiments/pretrained_search.md).

    python experiments/pretrained_search.py --data ../shared/data/open-photos \
        --model runs/A --model runs/B --model ../models/default.safetensors --out runs/search

Each --model is anything `vidcolour eval --model` takes (a run directory, a checkpoint, a
weights file). Writes OUT/eval_<set>.json and OUT/plots_<set>/ (histograms, sample grids) per
set and prints one markdown table per set, with the grey baseline; then applies the selection
rule: among models with colourfulness ratio >= 0.8 on both sets, the lowest mean ab-L1.
"""

import argparse
import json
from pathlib import Path

from common import COLUMNS, markdown_table, vidcolour

SETS = ("val", "val-broad")
RULE_CF = 0.8

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", type=Path, required=True, help="folder with val/ and val-broad/")
parser.add_argument("--model", action="append", required=True, help="repeatable")
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--device", default="auto")
args = parser.parse_args()

args.out.mkdir(parents=True, exist_ok=True)
columns = [*COLUMNS[:6], ("cast", "cast", 2), ("semantic_agreement", "semantic", 3)]
results = {}
for name in SETS:
    path = args.out / f"eval_{name}.json"
    cli = ["eval", "--baseline", "grey", "--data", str(args.data / name), "--json", str(path),
           "--plots", str(args.out / f"plots_{name}"), "--device", args.device]  # fmt: skip
    for model in args.model:
        cli += ["--model", model]
    vidcolour(*cli)
    results[name] = json.loads(path.read_text())
    print(f"\n{name} ({results[name]['dataset']['images']} images)\n")
    print("\n".join(markdown_table(results[name], columns)))

means = {n: {c["name"]: c["mean"] for c in r["colourisers"]} for n, r in results.items()}
# semantic agreement moves in steps of 1/19 on val-broad: the pooled figure over both sets too
counts = {n: r["dataset"]["images"] for n, r in results.items()}
print(f"\nsemantic agreement pooled over {' + '.join(SETS)} ({sum(counts.values())} images):")
for name in means[SETS[0]]:
    agreed = sum(means[s][name]["semantic_agreement"] * counts[s] for s in SETS)
    print(f"  {name}: {agreed / sum(counts.values()):.3f} ({round(agreed)} agree)")
models = [c["name"] for c in results[SETS[0]]["colourisers"] if c["kind"] == "model"]
eligible = [m for m in models if all(means[s][m]["colourfulness_ratio"] >= RULE_CF for s in SETS)]
print(
    f"\neligible (colourfulness ratio >= {RULE_CF} on {' and '.join(SETS)}): {eligible or 'none'}"
)
if eligible:
    ranked = sorted(eligible, key=lambda m: sum(means[s][m]["ab_l1"] for s in SETS) / len(SETS))
    for m in ranked:
        print(f"  {m}: mean ab-L1 {sum(means[s][m]['ab_l1'] for s in SETS) / len(SETS):.3f}")
    print(f"winner by the rule: {ranked[0]}")
