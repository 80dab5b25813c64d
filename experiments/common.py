"""What the experiment scripts share: running the CLI, and eval results as a markdown table."""

import subprocess
import sys
from pathlib import Path
from typing import Any

# (key of `vidcolour eval`'s mean metrics, column heading, decimals)
COLUMNS = [
    ("ab_l1", "ab-L1", 2),
    ("ab_psnr", "ab-PSNR [dB]", 2),
    ("rgb_psnr", "RGB PSNR", 2),
    ("ssim", "SSIM", 3),
    ("colourfulness_ratio", "CF ratio", 2),
    ("dataset_hist_overlap", "hist overlap", 3),  # pooled over the data set
    ("effnet_lite0_perceptual", "EffNet perc", 3),
    ("effnet_lite0_frechet", "EffNet FD", 1),
]


def vidcolour(*cli: str) -> None:
    subprocess.run([sys.executable, "-m", "vidcolour", *cli], check=True)


def train(config: str, data: Path, run: Path, device: str, sets: list[str]) -> Path:
    """`vidcolour train` of a config on DATA/train, validating on DATA/val, into ``run``;
    a run that has checkpoints is resumed."""
    cli = ["train", "--config", config, "--data", str(data / "train"), "--val",
           str(data / "val"), "--out", str(run), "--device", device]  # fmt: skip
    if (run / "checkpoints").is_dir():
        cli.append("--resume")
    for item in sets:
        cli += ["--set", item]
    vidcolour(*cli)
    return run


def markdown_table(
    result: dict[str, Any], columns: list[tuple[str, str, int]] = COLUMNS
) -> list[str]:
    """The mean metrics of every colouriser in an eval result, one row each."""
    lines = ["| model | " + " | ".join(h for _, h, _ in columns) + " |",
             "|---|" + "---:|" * len(columns)]  # fmt: skip
    for c in result["colourisers"]:
        cells = [f"{c['mean'][k]:.{d}f}" if k in c["mean"] else "-" for k, _, d in columns]
        lines.append(f"| {c['name']} | " + " | ".join(cells) + " |")
    return lines
