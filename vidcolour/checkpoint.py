"""Training checkpoints: one dict per file, written atomically, loaded without unpickling code.

A checkpoint holds the generator, every discriminator scale, both optimisers, the position in
training (step, epoch, step within the epoch), RNG states and the resolved config. Files are
``RUN_DIR/checkpoints/step-000001234.pt``; each is written to a temp file, fsynced and renamed,
so a kill -9 at any moment leaves every named checkpoint complete. The newest ``keep`` are kept.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from vidcolour.config import Config, from_dict
from vidcolour.errors import VidcolourError, first_line
from vidcolour.fsutil import atomic_path
from vidcolour.nets import Generator, build_generator, fold_for_inference
from vidcolour.torch_files import torch_load
from vidcolour.weights import check_finite

FORMAT = "vidcolour.checkpoint"
FORMAT_VERSION = 1


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def save_checkpoint(run_dir: Path, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` (must contain 'step') and delete all but the newest ``keep`` files."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{state['step']:09d}.pt"
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, tmp)
    for old in sorted(folder.glob("step-*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a training checkpoint on the CPU (tensors and plain containers only)."""
    state = torch_load(Path(path), "checkpoint")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise VidcolourError(f"{path} is not a vidcolour training checkpoint")
    missing = [key for key in ("config", "generator", "step") if key not in state]
    if missing:
        raise VidcolourError(f"{path} is not a complete vidcolour checkpoint: no '{missing[0]}'")
    return state


def checkpoint_generator(path: str | Path) -> tuple[Generator, Config, int]:
    """The trained generator of a checkpoint (its weight average when the run kept one,
    ``train.ema``), SN and BN folded for inference (eval mode), with the run's config and the
    step it was saved at."""
    state = load_checkpoint(path)
    try:
        config = from_dict(Config, state["config"])
        generator = build_generator(config.model.generator)
        weights = state.get("generator_ema", state["generator"])
        check_finite(weights, path)
        generator.load_state_dict(weights)
    except VidcolourError:
        raise
    except (ValueError, RuntimeError, TypeError, AttributeError) as exc:
        raise VidcolourError(
            f"{path}: its generator cannot be rebuilt ({first_line(exc)})"
        ) from None
    fold_for_inference(generator)
    return generator, config, state["step"]


def latest_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads, or None. Unloadable files are passed over (and named)."""
    for path in sorted(checkpoint_dir(run_dir).glob("step-*.pt"), reverse=True):
        try:
            return path, load_checkpoint(path)
        except VidcolourError as exc:
            print(f"warning: {exc}; trying an older checkpoint", file=sys.stderr)
    return None


def newest_checkpoint(run_dir: Path) -> Path:
    """The file of ``latest_checkpoint``, or an error naming what the folder lacks."""
    found = latest_checkpoint(run_dir)
    if found is None:
        raise VidcolourError(
            f"{run_dir} holds no checkpoint (checkpoints/step-*.pt): not a training run, "
            "or one that never saved"
        )
    return found[0]
