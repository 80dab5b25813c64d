"""Train, export and measure the bundled default model (models/MODEL_CARD.md).

    python experiments/bundled_model.py --data ../shared/data/open-photos --out runs/bundled

Trains configs/default.yaml (IBN + SN + MD, ngf = ndf = 32) on DATA/train and, with the same
budget, an L1-only regression model (the same generator, `loss.gan: none`), validating both on
DATA/val; exports the GAN's final generator as OUT/default.safetensors (float16, what ships as
models/default.safetensors); evaluates both with the grey and mean baselines on DATA/val through
`vidcolour eval`; writes OUT/eval.json, OUT/plots/ and OUT/table.md (the card's table).
Existing runs are resumed (a finished one ends at once).
"""

import argparse
import json
from pathlib import Path

from common import COLUMNS, markdown_table, train, vidcolour

from vidcolour.checkpoint import latest_checkpoint

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", type=Path, required=True, help="folder with train/ and val/")
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--device", default="auto")
args = parser.parse_args()


args.out.mkdir(parents=True, exist_ok=True)
gan = train("default", args.data, args.out / "gan", args.device, [])
l1_only = train("default", args.data, args.out / "l1_only", args.device, ["loss.gan=none"])
weights = args.out / "default.safetensors"
found = latest_checkpoint(gan)
assert found is not None, f"no checkpoint in {gan}"
checkpoint = found[0]
vidcolour("export", str(checkpoint), "-o", str(weights), "--half", "--overwrite")

result_path = args.out / "eval.json"
vidcolour("eval", "--model", str(weights), "--model", str(l1_only), "--baseline", "grey",
          "--baseline", "mean", "--data", str(args.data / "val"), "--json", str(result_path),
          "--plots", str(args.out / "plots"), "--device", args.device)  # fmt: skip
columns = [*COLUMNS[:5], ("hist_overlap", "hist overlap (per image)", 3), *COLUMNS[5:]]
lines = markdown_table(json.loads(result_path.read_text()), columns)
(args.out / "table.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
