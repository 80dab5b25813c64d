"""Generator weights: one safetensors file holding the tensors and the config that built them.

Nothing here unpickles: safetensors stores raw tensors plus a JSON header, and the network is
rebuilt from the config in that header. Any file that is not such a file (missing, truncated,
foreign, or with tensors of the wrong shapes) raises ``WeightsError`` with a one-line message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils import parametrize

from vidcolour._version import __version__
from vidcolour.config import ConfigError, GeneratorConfig, from_dict, to_dict
from vidcolour.errors import VidcolourError, first_line
from vidcolour.fsutil import atomic_path, write_error
from vidcolour.nets import Generator, build_generator, fold_batch_norm, fold_spectral_norm

FORMAT = "vidcolour.generator"
FORMAT_VERSION = "1"


class WeightsError(VidcolourError, ValueError):
    """A weights file that cannot be used; the message is one line."""


@dataclass(frozen=True)
class WeightsInfo:
    path: Path
    name: str
    config: GeneratorConfig
    folded: tuple[str, ...]  # which of "sn", "bn" were folded into the conv weights
    metadata: dict[str, str]


def _folded_parts(model: nn.Module) -> tuple[str, ...]:
    """Which parametrisations the model has folded away, read off its structure."""
    parts = []
    config: GeneratorConfig = model.config  # type: ignore[assignment]
    if config.spectral_norm and not any(parametrize.is_parametrized(m) for m in model.modules()):
        parts.append("sn")
    if any(isinstance(getattr(m, "norm", None), nn.Identity) for m in model.modules()):
        parts.append("bn")
    return tuple(parts)


def save_generator(
    path: str | Path,
    model: Generator,
    *,
    name: str,
    half: bool = False,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write ``model`` and its config to ``path`` atomically.

    half: store floating-point tensors as float16 (they are loaded back as float32).
    metadata: extra string fields for the header (e.g. training data, source run).
    """
    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if half and value.is_floating_point():
            value = value.half()
        tensors[key] = value.contiguous().clone()
    header = dict(metadata or {})
    header.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        vidcolour_version=__version__,
        name=name,
        config=json.dumps(to_dict(model.config)),
        folded=",".join(_folded_parts(model)),
    )
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=header)
        except SafetensorError as exc:  # its I/O errors (a full disk...), in its own words
            raise write_error(Path(path), exc) from None


def read_info(path: str | Path) -> WeightsInfo:
    """Read and validate the header of a weights file without loading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(
            f"{path} is not a readable safetensors file ({first_line(exc)})"
        ) from None
    if meta.get("format") != FORMAT:
        raise WeightsError(f"{path} is a safetensors file but not a vidcolour generator")
    if meta.get("format_version") != FORMAT_VERSION:
        raise WeightsError(
            f"{path} has weights format version {meta.get('format_version')!r}; "
            f"this vidcolour reads version {FORMAT_VERSION}"
        )
    try:
        config = from_dict(GeneratorConfig, json.loads(meta["config"]), "config")
    except (KeyError, json.JSONDecodeError, ConfigError) as exc:
        raise WeightsError(f"{path} has no usable generator config ({exc})") from None
    folded = tuple(p for p in meta.get("folded", "").split(",") if p)
    return WeightsInfo(path, meta.get("name", path.stem), config, folded, meta)


def check_finite(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Refuse weights holding NaN or infinity (a run that diverged): every picture would come
    out one flat colour."""
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise WeightsError(f"{path}: '{key}' holds NaN or infinite values")


def load_generator(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[Generator, WeightsInfo]:
    """Rebuild the generator stored in ``path`` and load its weights (float32, eval mode)."""
    info = read_info(path)
    try:
        model = build_generator(info.config)
    except ValueError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    if "sn" in info.folded:
        fold_spectral_norm(model)
    if "bn" in info.folded:
        fold_batch_norm(model)
    expected = model.state_dict()
    state = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            missing = sorted(set(expected) - keys)
            unexpected = sorted(keys - set(expected))
            if missing or unexpected:
                what = f"missing '{missing[0]}'" if missing else f"unexpected '{unexpected[0]}'"
                raise WeightsError(f"{path} does not match its config: {what}")
            for key, ref in expected.items():
                tensor = f.get_tensor(key)
                if tensor.shape != ref.shape:
                    raise WeightsError(
                        f"{path}: '{key}' has shape {tuple(tensor.shape)}, "
                        f"the config needs {tuple(ref.shape)}"
                    )
                state[key] = tensor.to(ref.dtype)
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"{path} is damaged ({str(exc).splitlines()[0]})") from None
    check_finite(state, path)
    model.load_state_dict(state)
    return model.to(device).eval(), info
