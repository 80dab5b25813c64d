"""Files that ship with vidcolour: the configs and the bundled model(s).

In a wheel they are inside the package (pyproject's force-include); in a source checkout or an
editable install they are at the repository's top level.
"""

from __future__ import annotations

import os
from pathlib import Path

from vidcolour.errors import VidcolourError

_PACKAGE = Path(__file__).resolve().parent


def _shipped(name: str) -> Path:
    inside = _PACKAGE / name
    return inside if inside.is_dir() else _PACKAGE.parent / name


def configs_dir() -> Path:
    return _shipped("configs")


def config_names() -> list[str]:
    return sorted(p.stem for p in configs_dir().glob("*.yaml"))


def resolve_config(name_or_path: str) -> Path:
    """A config given by path, or by the name of a shipped config (``ibn_sn_md``). A shipped
    config's bare name means it, whatever the current folder holds; ``./name`` means a file."""
    path = Path(name_or_path)
    shipped = configs_dir() / f"{name_or_path}.yaml"
    bare = not path.suffix and not any(sep in name_or_path for sep in ("/", os.sep))
    if not (bare and shipped.is_file()) and (path.suffix in (".yaml", ".yml") or path.exists()):
        if path.is_dir():
            raise VidcolourError(f"config {path} is a folder, not a YAML file")
        if not path.is_file():
            raise VidcolourError(f"config file not found: {path}")
        return path
    if not shipped.is_file():
        known = ", ".join(config_names())
        raise VidcolourError(f"unknown config '{name_or_path}' (shipped configs: {known})")
    return shipped


DEFAULT_MODEL = "default"


def models_dir() -> Path:
    return _shipped("models")


def model_names() -> list[str]:
    return sorted(p.stem for p in models_dir().glob("*.safetensors"))


def resolve_model(name_or_path: str | Path | None) -> Path:
    """A model given by path (weights, checkpoint or run directory) or by the name of a bundled
    model; None means the bundled default."""
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    path = Path(name_or_path)
    if path.exists():
        return path
    shipped = models_dir() / f"{name_or_path}.safetensors"
    if shipped.is_file():
        return shipped
    if path.suffix or len(path.parts) > 1:
        raise VidcolourError(f"model file not found: {path}")
    known = ", ".join(model_names()) or "none in this install"
    raise VidcolourError(
        f"unknown model '{name_or_path}' (bundled models: {known}); "
        "pass a weights file, checkpoint or run directory"
    )
