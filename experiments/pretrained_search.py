"""Measure the pretrained-encoder search's runs against the shipped models, one `vidcolour eval`
run per validation set, and print the card's tables (experiments/pretrained_search.md).

    python experiments/pretrained_search.py --data ../shared/data/open-photos \
        --model models/default.safetensors --model runs/A --model runs/B --out runs/search

Each --model is anything `vidcolour eval --model` takes (a run directory, a checkpoint, a
weights file). Writes OUT/eval_<set>.json and OUT/plots_<set>/ (histograms, sample grids) per
set and prints one markdown table per set, with the grey baseline; then applies the selection
rule: among models with colourfulness ratio >= 0.8 on both sets, the lowest mean ab-L1. The
first --model is the one to beat: OUT/tradeoff.png draws every model's ab-L1 against its
colourfulness ratio per set, with issue 19's corner (ratio >= 0.8, ab-L1 5% below the first
model's) shaded and grey's ab-L1 drawn across. Semantic agreement is also compared with grey's
picture by picture (an exact sign test on the pictures where the two differ), since the
pooled figures move in steps of 1/51, and so is its graded form, the classifier's probability of
the original's class (a paired randomisation test over every picture).
"""

import argparse
import json
import math
from pathlib import Path

import numpy as np
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
columns = [
    *COLUMNS[:6],
    ("cast", "cast", 2),
    ("semantic_agreement", "semantic", 3),
    ("semantic_confidence", "sem. conf.", 3),
]
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


def plot_tradeoff(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SETS), figsize=(6 * len(SETS), 5.6))
    for ax, name in zip(axes, SETS, strict=True):
        found = means[name]
        reference = next(iter(found))  # the first --model: the current default
        bar = 0.95 * found[reference]["ab_l1"]
        ab = [m["ab_l1"] for m in found.values()]
        low, high = min(ab) - 0.4, max(ab) + 0.4
        ratios = [m["colourfulness_ratio"] for model, m in found.items() if model != "grey"]
        left, right = min(0.6, min(ratios) - 0.05), max(1.1, max(ratios) + 0.05)
        corner = f"the bar: ratio >= {RULE_CF}, ab-L1 5% below the first model's"
        ax.fill_between([RULE_CF, right], low, bar, color="tab:green", alpha=0.12, label=corner)
        ax.axhline(found["grey"]["ab_l1"], color="grey", ls="--", lw=1, label="grey's ab-L1")
        models = [model for model in found if model != "grey"]
        palette = plt.cm.tab10 if len(models) <= 10 else plt.cm.tab20
        for i, model in enumerate(models):  # one colour a model, the same in both panels
            m, first = found[model], model == reference
            ax.scatter(m["colourfulness_ratio"], m["ab_l1"], color=palette(i % palette.N),
                       marker="*" if first else "o", s=140 if first else 50, zorder=3,
                       label=model.split("-step")[0] + (" (to beat)" if first else ""))  # fmt: skip
        ax.set(xlim=(left, right), ylim=(low, high), title=f"{name} ({counts[name]} photos)")
        ax.set(xlabel="colourfulness ratio (output / truth)", ylabel="ab-L1 (lower: closer)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=5, fontsize=8)
    fig.tight_layout(rect=(0, 0.12, 1, 1))  # room below for the one legend
    fig.savefig(out, dpi=110)
    plt.close(fig)


# semantic agreement moves in steps of 1/19 on val-broad: the pooled figure over both sets too
counts = {n: r["dataset"]["images"] for n, r in results.items()}
print(f"\nsemantic agreement pooled over {' + '.join(SETS)} ({sum(counts.values())} images):")
for name in means[SETS[0]]:
    agreed = sum(means[s][name]["semantic_agreement"] * counts[s] for s in SETS)
    print(f"  {name}: {agreed / sum(counts.values()):.3f} ({round(agreed)} agree)")


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact p of a split of discordant pairs (McNemar's exact test)."""
    n, low = wins + losses, min(wins, losses)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(low + 1)) / 2**n) if n else 1.0


def by_picture(name: str, key: str = "semantic_agreement") -> dict[str, float]:
    return {
        p["path"]: p[key]
        for r in results.values()
        for c in r["colourisers"]
        if c["name"] == name
        for p in c["per_image"]
    }


# Is a model's agreement above grey's, or the pictures' luck? Paired, picture by picture: only
# the pictures where the two differ count (McNemar's exact test).
grey = by_picture("grey")
print("\nsemantic agreement against grey's, picture by picture (pooled):")
for name in means[SETS[0]]:
    if name == "grey":
        continue
    mine = by_picture(name)
    wins = sum(1 for p in mine if mine[p] and not grey[p])
    losses = sum(1 for p in mine if grey[p] and not mine[p])
    n = wins + losses
    needed = max((k for k in range(n // 2 + 1) if sign_test(k, n - k) < 0.05), default=None)
    bar = (
        f"grey alone on at most {needed} of those {n}"
        if needed is not None
        else f"more than {n} pictures that differ"
    )
    print(
        f"  {name}: kept by it alone {wins}, by grey alone {losses}, exact p = "
        f"{sign_test(wins, losses):.2f} (above grey at p < 0.05 would need {bar})"
    )


def paired_p(differences: list[float], draws: int = 100_000) -> float:
    """Two-sided p of a paired randomisation test of the mean difference: each picture's sign
    flipped at random (seeded, so a rerun prints the same p)."""
    d = np.asarray(differences)
    rng, extreme = np.random.default_rng(0), 0
    for start in range(0, draws, 10_000):  # in pieces: a few MB whatever the pictures
        signs = rng.choice([-1.0, 1.0], size=(min(10_000, draws - start), d.size))
        extreme += int((np.abs(signs @ d) >= abs(d.sum()) - 1e-12).sum())
    return (extreme + 1) / (draws + 1)


# The graded form: the classifier's probability of the original's class, every picture paired
# with grey's, so that each picture counts and not only those whose top-1 flips.
if "semantic_confidence" in results[SETS[0]]["colourisers"][0]["mean"]:
    grey = by_picture("grey", "semantic_confidence")
    print("\nsemantic confidence against grey's, picture by picture (pooled):")
    for name in means[SETS[0]]:
        if name == "grey":
            continue
        mine = by_picture(name, "semantic_confidence")
        d = [mine[p] - grey[p] for p in grey]
        higher = sum(1 for x in d if x > 0)
        print(
            f"  {name}: mean {np.mean(list(mine.values())):.3f} against grey's "
            f"{np.mean(list(grey.values())):.3f}, higher on {higher} of {len(d)} pictures, "
            f"paired randomisation p = {paired_p(d):.3f}"
        )
plot_tradeoff(args.out / "tradeoff.png")
print(f"\nplot: {args.out / 'tradeoff.png'}")
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
