"""``vidcolour eval``: colourisers measured side by side on images with known colour.

A colouriser is anything that maps L to ab: a trained generator (weights file, checkpoint or run
directory) or a trivial baseline (grey: ab = 0; mean: the data set's mean ab). All go through
the same code, so a model is only better than a baseline if it measures better.

Every image is resized to size x size (by default stretched whole, the paper's protocol; or its
undistorted centre square, as `vidcolour run` sees pictures), converted to Lab, and its L fed to
each colouriser. Metrics are defined in docs/METRICS.md.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vidcolour._version import __version__
from vidcolour.colour import denormalise_ab, model_to_rgb, normalise_ab, rgb_to_lab, rgb_to_model
from vidcolour.config import DataConfig, Resize
from vidcolour.data import ImageDataset, ImageProblem, list_images, scan_images
from vidcolour.devices import autocast_dtype
from vidcolour.errors import VidcolourError
from vidcolour.fsutil import atomic_path
from vidcolour.metrics import HIST_BINS, HIST_RANGE, ab_histograms, histogram_overlap, image_metrics
from vidcolour.model_files import open_model
from vidcolour.perceptual import (
    VGG19,
    EfficientNetLite0,
    ImageNetLite,
    feature_l1,
    frechet_distance,
)
from vidcolour.plots import read_metrics, save_sample_grid, to_uint8_images
from vidcolour.predict import working_predict
from vidcolour.progress import Update

SCHEMA = "vidcolour.eval/1"
Predict = Callable[[torch.Tensor], torch.Tensor]  # l (B,1,H,W) in [-1,1] -> ab (B,2,H,W) in [-1,1]


@dataclass
class Candidate:
    """A named L -> ab function and what identifies it."""

    name: str
    kind: str  # "model" or "baseline"
    predict: Predict
    source: str | None = None
    sha256: str | None = None
    config: dict[str, Any] | None = None
    run_dir: Path | None = None  # for learning curves


def load_candidate(
    spec: str, device: torch.device, size: int, dtype: torch.dtype | None
) -> Candidate:
    """A trained generator from a .safetensors file, a checkpoint (.pt) or a run directory,
    predicting as ``vidcolour run --resolution size`` does (autocast to ``dtype``)."""
    found = open_model(spec)
    return Candidate(
        name=found.name,
        kind="model",
        predict=working_predict(found.generator.to(device), size, dtype),
        source=str(spec),
        sha256=found.sha256,
        config=found.config,
        run_dir=found.run_dir,
    )


def grey_baseline() -> Candidate:
    return Candidate("grey", "baseline", lambda l: l.new_zeros(l.shape[0], 2, *l.shape[2:]))


def mean_baseline(mean_ab: torch.Tensor) -> Candidate:
    """A constant: ``mean_ab`` (2,) in Lab units, the mean ab of a data set."""
    value = normalise_ab(mean_ab).view(1, 2, 1, 1)
    return Candidate(
        f"mean ab ({mean_ab[0]:.1f}, {mean_ab[1]:.1f})",
        "baseline",
        lambda l: value.to(l.device).expand(l.shape[0], 2, *l.shape[2:]),
    )


def dataset_mean_ab(
    loader: DataLoader, device: torch.device, progress: Update | None = None
) -> torch.Tensor:
    """The mean (a, b) of every picture the loader gives, in Lab units: (2,) float32.
    ``progress`` hears (pictures read, pictures in all) per batch."""
    total = torch.zeros(2, dtype=torch.float64)
    pixels = read = 0
    for rgb, names, problems in loader:
        read += len(names) + len(problems)
        if progress is not None:
            progress(read, len(loader.dataset))  # type: ignore[arg-type]
        if rgb is None:
            continue
        ab = rgb_to_lab(rgb.to(device).float() / 255)[:, 1:]
        total += ab.double().sum((0, 2, 3)).cpu()
        pixels += ab.shape[0] * ab.shape[2] * ab.shape[3]
    return (total / max(pixels, 1)).float()


class _EvalImages(Dataset):
    """Every image once, in order; an image that fails to decode is reported, never replaced
    (a substitute would skew the measurement)."""

    def __init__(self, paths: Sequence[Path], size: int, resize: Resize = "stretch") -> None:
        self.images = ImageDataset(paths, size, DataConfig(resize=resize), train=False)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, str, str | None]:
        path = self.images.paths[index]
        try:
            return self.images.load(path), str(path), None
        except ImageProblem as problem:
            return None, str(path), problem.reason


def _eval_collate(
    samples: list[tuple[torch.Tensor | None, str, str | None]],
) -> tuple[torch.Tensor | None, list[str], dict[str, str]]:
    """(B, 3, H, W) uint8 of the usable images (None if there are none), their paths, and
    path -> reason for the others."""
    kept = [(image, path) for image, path, _ in samples if image is not None]
    problems = {path: reason for image, path, reason in samples if reason is not None}
    images = torch.stack([image for image, _ in kept]) if kept else None
    return images, [path for _, path in kept], problems


def eval_loader(
    paths: Sequence[Path], size: int, batch_size: int, resize: Resize = "stretch"
) -> DataLoader:
    images = _EvalImages(paths, size, resize)
    return DataLoader(images, batch_size=batch_size, collate_fn=_eval_collate)


@dataclass
class Extras:
    """Optional feature networks for perceptual metrics."""

    vgg19: VGG19 | None = None
    effnet: EfficientNetLite0 | None = None
    # Semantic agreement (Zhang et al. 2016): an ImageNet classifier that is not the encoder of
    # the generators measured (theirs is Lite0), so that a model cannot agree with itself.
    classifier: ImageNetLite | None = None


@dataclass
class _Accumulator:
    per_image: list[dict[str, Any]] = field(default_factory=list)
    hist: torch.Tensor = field(
        default_factory=lambda: torch.zeros(2, HIST_BINS, dtype=torch.float64)
    )
    pooled: list[torch.Tensor] = field(default_factory=list)


@torch.inference_mode()
def evaluate_candidates(
    colourisers: Sequence[Candidate],
    paths: Sequence[Path],
    size: int,
    device: torch.device,
    extras: Extras,
    batch_size: int = 8,
    samples: int = 6,
    grid: Path | None = None,
    resize: Resize = "stretch",
    progress: Update | None = None,
) -> dict[str, Any]:
    """Measure every colouriser on the images at ``paths``, each resized to size x size by
    ``resize`` (vidcolour.data.fit_to_size: the whole picture stretched, or its centre square);
    the result follows SCHEMA. ``progress`` hears (pictures read, pictures in all) per batch:
    every colouriser measures each batch in turn, so one count covers them all."""
    loader = eval_loader(paths, size, batch_size, resize)
    accs = [_Accumulator() for _ in colourisers]
    skipped: dict[str, str] = {}
    truth_hist = torch.zeros(2, HIST_BINS, dtype=torch.float64)
    truth_pooled: list[torch.Tensor] = []
    shown: list[list[np.ndarray]] = [[] for _ in range(len(colourisers) + 2)]
    done = 0
    if progress is not None:
        progress(0, len(paths))
    for rgb_u8, names, problems in loader:
        skipped.update(problems)
        if progress is not None and rgb_u8 is None:
            progress(done + len(skipped), len(paths))
        if rgb_u8 is None:
            continue
        rgb = rgb_u8.to(device).float() / 255
        l, true_ab = rgb_to_model(rgb)
        truth_hist += ab_histograms(denormalise_ab(true_ab)).sum(0).cpu()
        truth_feats = _features(extras, rgb)
        if truth_feats.get("pooled") is not None:
            truth_pooled.append(truth_feats["pooled"].cpu())
        take = max(0, min(samples - len(shown[0]), rgb.shape[0]))
        if take:
            shown[0].extend(
                to_uint8_images(model_to_rgb(l[:take], torch.zeros_like(true_ab[:take])))
            )
            shown[-1].extend(to_uint8_images(rgb[:take]))
        for c, (colouriser, acc) in enumerate(zip(colourisers, accs, strict=True)):
            pred_rgb = _measure(colouriser, acc, l, rgb, names, truth_feats, extras)
            if take:
                shown[c + 1].extend(to_uint8_images(pred_rgb[:take]))
        done += rgb.shape[0]
        if progress is not None:
            progress(done + len(skipped), len(paths))

    if not done:
        raise VidcolourError("no image could be evaluated: " + "; ".join(
            f"{path}: {reason}" for path, reason in list(skipped.items())[:3]))  # fmt: skip
    if grid is not None and shown[0]:
        labels = ["grey input", *(c.name for c in colourisers), "ground truth"]
        save_sample_grid([np.stack(column) for column in shown], grid, labels=labels)
    results = []
    for colouriser, acc in zip(colourisers, accs, strict=True):
        results.append(_summarise(colouriser, acc, truth_hist, truth_pooled))
    return {
        "schema": SCHEMA,
        "vidcolour_version": __version__,
        "dataset": {"images": done, "size": size, "resize": resize, "failed": skipped},
        "histogram": {"bins": HIST_BINS, "range": [-HIST_RANGE, HIST_RANGE]},
        "ground_truth_histograms": {"a": truth_hist[0].tolist(), "b": truth_hist[1].tolist()},
        "colourisers": results,
    }


def _measure(
    colouriser: Candidate,
    acc: _Accumulator,
    l: torch.Tensor,
    rgb: torch.Tensor,
    names: Sequence[str],
    truth_feats: dict[str, Any],
    extras: Extras,
) -> torch.Tensor:
    """One batch through ``colouriser``: each picture's metrics and the ab histogram into
    ``acc``. l: (B, 1, H, W) model L in [-1, 1]; rgb: the originals (B, 3, H, W) in [0, 1].
    Returns the colourised pictures, (B, 3, H, W) float in [0, 1]."""
    pred_ab = colouriser.predict(l).float().clamp(-1, 1)
    values = image_metrics(rgb, pred_ab)
    acc.hist += ab_histograms(denormalise_ab(pred_ab)).sum(0).cpu()
    pred_rgb = model_to_rgb(l, pred_ab)
    feats = _features(extras, pred_rgb)
    if extras.vgg19 is not None:
        values["vgg19_perceptual"] = feature_l1(feats["vgg19"], truth_feats["vgg19"])
    if extras.classifier is not None:
        probabilities = extras.classifier.probabilities(pred_rgb)
        truth_class = truth_feats["top1"]
        values["semantic_agreement"] = (probabilities.argmax(1) == truth_class).float()
        # graded: how sure the classifier stays of the original's class (Zhang et al.'s test
        # asks only whether it stays the top one)
        values["semantic_confidence"] = probabilities.gather(1, truth_class[:, None])[:, 0]
    if extras.effnet is not None:
        values["effnet_lite0_perceptual"] = feature_l1(feats["effnet"], truth_feats["effnet"])
        acc.pooled.append(feats["pooled"].cpu())
    for i, name in enumerate(names):
        acc.per_image.append({"path": name, **{k: float(v[i]) for k, v in values.items()}})
    return pred_rgb


def _features(extras: Extras, rgb: torch.Tensor) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if extras.vgg19 is not None:
        out["vgg19"] = extras.vgg19(rgb)
    if extras.effnet is not None:
        out["effnet"], out["pooled"], _ = extras.effnet(rgb)
    if extras.classifier is not None:
        out["top1"] = extras.classifier.top1(rgb)
    return out


def _summarise(
    colouriser: Candidate,
    acc: _Accumulator,
    truth_hist: torch.Tensor,
    truth_pooled: list[torch.Tensor],
) -> dict[str, Any]:
    keys = [k for k in acc.per_image[0] if k != "path"]
    mean = {k: float(np.mean([r[k] for r in acc.per_image])) for k in keys}
    mean["colourfulness_ratio"] = mean["colourfulness"] / max(mean["colourfulness_gt"], 1e-12)
    # every image has the same size, so the mean of the per-image means is the pixel mean
    mean["cast_a"] = mean["mean_a"] - mean["mean_a_gt"]
    mean["cast_b"] = mean["mean_b"] - mean["mean_b_gt"]
    mean["cast"] = float(np.hypot(mean["cast_a"], mean["cast_b"]))
    overlap = histogram_overlap(acc.hist, truth_hist)
    mean["dataset_hist_overlap_a"], mean["dataset_hist_overlap_b"] = map(float, overlap)
    mean["dataset_hist_overlap"] = float(overlap.mean())
    if acc.pooled:
        mean["effnet_lite0_frechet"] = frechet_distance(
            torch.cat(acc.pooled), torch.cat(truth_pooled)
        )
    return {
        "name": colouriser.name,
        "kind": colouriser.kind,
        "source": colouriser.source,
        "sha256": colouriser.sha256,
        "config": colouriser.config,
        "mean": mean,
        "histograms": {"a": acc.hist[0].tolist(), "b": acc.hist[1].tolist()},
        "per_image": acc.per_image,
    }


def write_json(result: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result, indent=1))


def plot_histograms(result: dict[str, Any], out: Path) -> None:
    """The paper's Fig. 4: log-scale a and b histograms, ground truth and one curve per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres = np.linspace(-HIST_RANGE, HIST_RANGE, HIST_BINS + 1)
    centres = (centres[:-1] + centres[1:]) / 2
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    curves: list[tuple[str, dict[str, list[float]], str | None]]
    curves = [("ground truth", result["ground_truth_histograms"], "k")]
    curves += [(c["name"], c["histograms"], None) for c in result["colourisers"]]
    for ax, channel in zip(axes, ("a", "b"), strict=True):
        for name, hist, colour in curves:
            counts = np.asarray(hist[channel])
            density = counts / max(counts.sum(), 1)
            ax.semilogy(centres, np.where(density > 0, density, np.nan), label=name,
                        color=colour, linewidth=1.6 if colour else 1.1)  # fmt: skip
        ax.set_title(f"{channel} channel")
        ax.set_xlabel(f"{channel} (Lab units)")
        ax.set_ylabel("share of pixels (log)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def run_eval(
    models: Sequence[str],
    baselines: Sequence[str],
    data: str,
    size: int,
    device: torch.device,
    extras: Extras,
    plots: Path | None,
    batch_size: int = 8,
    resize: Resize = "stretch",
    precision: str = "auto",
    notice: Callable[[str], None] | None = None,
    progress: Update | None = None,
) -> dict[str, Any]:
    """Load the colourisers, vet the data, measure, and write plots. Returns the result dict.
    ``notice`` hears what is worth a line but no error (default: stderr); ``progress`` the
    measurement's count of pictures (``evaluate_candidates``).

    Models predict as ``vidcolour run --resolution size --precision precision`` does."""
    report = scan_images(list_images(data), min_side=1)
    if not report.usable:
        raise VidcolourError(f"no usable colour images in {data} ({report.summary()})")
    dtype = autocast_dtype(device, precision)
    colourisers = [load_candidate(m, device, size, dtype) for m in models]
    # The mean baseline reads the pictures once more, first: one count over both passes.
    passes = 2 if "mean" in baselines else 1

    def pass_progress(k: int) -> Update | None:
        if progress is None:
            return None
        return lambda done, total: progress(k * (total or 0) + done, passes * (total or 0))

    for baseline in baselines:
        if baseline == "grey":
            colourisers.append(grey_baseline())
        else:
            loader = eval_loader(report.usable, size, batch_size, resize)
            colourisers.append(mean_baseline(dataset_mean_ab(loader, device, pass_progress(0))))
    runs: dict[str, list[dict[str, Any]]] = {}
    if plots is not None:
        # before the measurement: a damaged log must not cost the time of measuring
        notice = notice or (lambda line: print(f"notice: {line}", file=sys.stderr))
        runs = {c.name: read_metrics(c.run_dir, notice) for c in colourisers if c.run_dir}
        plots.mkdir(parents=True, exist_ok=True)
    grid = plots / "samples.png" if plots is not None else None
    result = evaluate_candidates(
        colourisers,
        report.usable,
        size,
        device,
        extras,
        batch_size=batch_size,
        grid=grid,
        resize=resize,
        progress=pass_progress(passes - 1),
    )
    result["dataset"].update(
        source=data, skipped=dict(report.skipped), converted=dict(report.converted)
    )
    if plots is not None:
        plot_histograms(result, plots / "histograms.png")
        if runs:
            from vidcolour.plots import plot_learning_curves

            plot_learning_curves(runs, plots / "learning_curves.png")
    return result
