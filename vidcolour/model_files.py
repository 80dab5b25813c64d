"""Model files: a generator opened from any of the forms a user may name, and a training
checkpoint's generator exported as a weights file.

The forms: a bundled model's name, a ``.safetensors`` weights file (vidcolour/weights.py), a
training checkpoint ``.pt`` (vidcolour/checkpoint.py) or a run directory (its newest
checkpoint).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidcolour.checkpoint import checkpoint_generator, newest_checkpoint
from vidcolour.config import to_dict
from vidcolour.errors import VidcolourError
from vidcolour.fsutil import file_sha256
from vidcolour.nets import Generator, fold_for_prediction
from vidcolour.resources import resolve_model
from vidcolour.sniff import describe, model_file_kind
from vidcolour.weights import load_generator, save_generator


@dataclass(frozen=True)
class ModelFile:
    """A generator read from disk, and what identifies it."""

    generator: Generator  # folded, eval mode, float32
    name: str
    path: Path  # the file the weights came from
    sha256: str
    config: dict[str, Any]
    run_dir: Path | None = None  # when given as a training run directory


def open_model(spec: str | Path | None) -> ModelFile:
    """A generator from a bundled model's name, a .safetensors file, a checkpoint (.pt) or a run
    directory (its newest checkpoint); None is the bundled default model."""
    path = resolve_model(spec)
    run_dir = None
    if path.is_dir():
        run_dir, path = path, newest_checkpoint(path)
    kind = model_file_kind(path)  # by content: a .pt name may hold safetensors
    if kind is None:
        raise VidcolourError(
            f"{path} is not a model file: neither safetensors weights nor a vidcolour "
            f"checkpoint ({describe(path)})"
        )
    if kind == "torch":
        generator, run_config, _ = checkpoint_generator(path)
        config = to_dict(run_config)
        name = run_dir.name if run_dir is not None else f"{run_config.name}@{path.stem}"
    else:
        generator, info = load_generator(path)
        config, name = {"model": {"generator": to_dict(info.config)}}, info.name
    fold_for_prediction(generator)
    return ModelFile(generator.eval(), name, path, file_sha256(path), config, run_dir)


def export_generator(checkpoint: Path, out: Path, half: bool = False) -> dict[str, Any]:
    """The generator of a training checkpoint, SN and BN folded, as a weights file."""
    generator, config, step = checkpoint_generator(checkpoint)
    name = f"{config.name}-step{step}"
    save_generator(
        out,
        generator,
        name=name,
        half=half,
        metadata={"train_config": json.dumps(to_dict(config)), "step": str(step)},
    )
    return {"name": name, "step": step}
