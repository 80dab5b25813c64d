"""Torch files (checkpoints, state dicts of pretrained networks) loaded without running code:
``torch.load`` with ``weights_only=True`` behind one-line errors."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from vidcolour.errors import VidcolourError, first_line
from vidcolour.sniff import describe, model_file_kind


def torch_load(path: Path, what: str) -> Any:
    """``torch.load`` with ``weights_only=True`` (never unpickles code), on the CPU.

    A missing file, or one that is not a torch file with tensors and plain containers only,
    raises VidcolourError naming ``what`` ("checkpoint", ...) in one line. torch's own advice
    to retry with ``weights_only=False`` (running whatever the file holds) is never passed on.
    """
    if not path.is_file():
        raise VidcolourError(f"{what} not found: {path}")
    kind = model_file_kind(path)
    if kind == "safetensors":
        raise VidcolourError(f"{path} is not a {what}: it is a safetensors weights file")
    if kind is None:
        raise VidcolourError(f"{path} is not a {what}: not a torch file ({describe(path)})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" not in str(exc):
            raise VidcolourError(f"{path} is not a readable {what} (damaged)") from None
        raise VidcolourError(
            f"{path} is not a {what}: it holds Python objects besides tensors, "
            "and vidcolour loads no code from model files"
        ) from None
    except Exception as exc:  # a damaged file fails anywhere in torch's reader
        raise VidcolourError(
            f"{path} is not a readable {what} (damaged or cut short: {first_line(exc)})"
        ) from None


def load_state_strict(
    model: torch.nn.Module, path: str | Path, what: str, unused: tuple[str, ...] | None = ()
) -> None:
    """Load a state dict file into ``model`` (``torch_load``: weights only), strictly: every key
    of the model present with its shape. Keys the model lacks are an error unless they start
    with one of ``unused`` (parts of the file's network this model leaves out); None allows any.
    Every error is one line naming ``what``.
    """
    path = Path(path)
    state = torch_load(path, f"{what} weights")
    if not isinstance(state, dict):
        raise VidcolourError(f"{path} is not a {what} state dict")
    expected = model.state_dict()
    for key, ref in expected.items():
        if key not in state:
            raise VidcolourError(f"{path} is not {what} weights: '{key}' is missing")
        if tuple(state[key].shape) != tuple(ref.shape):
            raise VidcolourError(
                f"{path} is not {what} weights: '{key}' has shape {tuple(state[key].shape)}, "
                f"not {tuple(ref.shape)}"
            )
    if unused is not None:
        extra = [k for k in state if k not in expected and not k.startswith(unused)]
        if extra:
            raise VidcolourError(f"{path} is not {what} weights: unexpected '{extra[0]}'")
    model.load_state_dict({k: state[k] for k in expected})
