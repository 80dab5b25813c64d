"""Pictures of runs and results: learning curves (the paper's Fig. 3) and sample grids."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from vidcolour.errors import VidcolourError
from vidcolour.fsutil import atomic_path

CURVES = [
    ("loss_g_adv", "G adversarial loss"),
    ("loss_g_l1", "G L1 loss (ab / 110)"),
    ("loss_d", "D loss (sum over scales)"),
    ("val_ab_l1", "validation ab-L1 (Lab units)"),
]
_LABEL_HEIGHT = 16  # px above a sample grid for its column labels


def read_metrics(
    run_dir: Path, notice: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """The records of ``run_dir``/metrics.jsonl, oldest first ([] when there is none).

    A last line that is not a whole record is one cut short by a crash or a full disk in the
    middle of an append: it is left out, and ``notice`` told. A bad line before the last one
    is damage no writer of ours leaves: an error naming the file and the line.
    """
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = path.read_text(errors="replace").splitlines()
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records = []
    for i, line in enumerate(lines[: last + 1]):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
        elif i == last:
            if notice is not None:
                notice(
                    f"{path}: its last line is a record cut short (a crash mid-write?), left out"
                )
        else:
            raise VidcolourError(f"{path}, line {i + 1}: not a metrics record (damaged file?)")
    return records


def plot_learning_curves(runs: Mapping[str, Sequence[Mapping[str, Any]]], out: Path) -> None:
    """One panel per loss term, one line per run; x is the training step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    for ax, (key, title) in zip(axes.flat, CURVES, strict=True):
        for name, records in runs.items():
            points = [(r["step"], r[key]) for r in records if key in r]
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(steps, values, label=name, linewidth=1.2)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.has_data() and len(runs) > 1:
            ax.legend(fontsize=8)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def to_uint8_images(rgb: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [0, 1] -> (B, H, W, 3) uint8."""
    return (rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_sample_grid(
    columns: Sequence[np.ndarray],
    out: Path,
    gap: int = 4,
    labels: Sequence[str] | None = None,
) -> None:
    """Save a grid: one row per image, one column per array of (B, H, W, 3) uint8 images
    (e.g. grey input, output, ground truth), under a row of column ``labels`` when given
    (each cut to its column's width)."""
    b, h, w, _ = columns[0].shape
    top = _LABEL_HEIGHT if labels else 0
    grid = np.full((top + b * (h + gap) - gap, len(columns) * (w + gap) - gap, 3), 255, np.uint8)
    for c, images in enumerate(columns):
        x = c * (w + gap)
        for r in range(b):
            grid[top + r * (h + gap) : top + r * (h + gap) + h, x : x + w] = images[r]
    picture = Image.fromarray(grid)
    if labels:
        draw = ImageDraw.Draw(picture)
        font = ImageFont.load_default()
        for c, label in enumerate(labels):
            while label and draw.textlength(label, font=font) > w:
                label = label[:-1]
            x = c * (w + gap) + (w - draw.textlength(label, font=font)) / 2
            draw.text((x, 2), label, fill=(0, 0, 0), font=font)
    with atomic_path(out) as tmp:
        picture.save(tmp, format="PNG")
