"""The networks, their builders and their costs.

Generators come from a registry (``GENERATORS``, named by ``model.generator.arch``); all honour
the contract of ``nets.base.Generator``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vidcolour.config import DiscriminatorConfig, GeneratorConfig, ModelConfig
from vidcolour.nets.base import Generator
from vidcolour.nets.discriminator import MultiScaleDiscriminator, PatchDiscriminator
from vidcolour.nets.fold import (
    fold_batch_norm,
    fold_for_inference,
    fold_for_prediction,
    fold_spectral_norm,
)
from vidcolour.nets.generator import UNetGenerator, pad_to_fit
from vidcolour.nets.layers import (
    IBN,
    NORM_PLANS,
    ConvAct,
    InstanceHalf,
    PhaseConvTranspose,
    flop_formulas,
)
from vidcolour.nets.lite_unet import LiteUNetGenerator, init_pretrained

__all__ = [
    "GENERATORS",
    "IBN",
    "NORM_PLANS",
    "ConvAct",
    "Generator",
    "InstanceHalf",
    "LiteUNetGenerator",
    "MultiScaleDiscriminator",
    "PatchDiscriminator",
    "PhaseConvTranspose",
    "UNetGenerator",
    "build_discriminator",
    "build_generator",
    "check_batch",
    "check_size",
    "count_flops",
    "count_params",
    "flop_counter",
    "fold_batch_norm",
    "fold_for_inference",
    "fold_for_prediction",
    "fold_spectral_norm",
    "init_pretrained",
    "model_costs",
    "pad_to_fit",
]


GENERATORS: dict[str, Callable[[GeneratorConfig], Generator]] = {
    "unet": UNetGenerator,
    "lite0_unet": partial(LiteUNetGenerator, variant="lite0"),
    "lite1_unet": partial(LiteUNetGenerator, variant="lite1"),
    "lite2_unet": partial(LiteUNetGenerator, variant="lite2"),
}


def build_generator(config: GeneratorConfig) -> Generator:
    """The generator ``config.arch`` names, with random initial weights (``init_pretrained``
    loads a pretrained part's)."""
    if config.arch not in GENERATORS:
        raise ValueError(f"unknown generator arch {config.arch!r} (known: {', '.join(GENERATORS)})")
    if config.arch == "unet" and config.depth < 2:
        raise ValueError(f"generator depth must be at least 2, got {config.depth}")
    if config.ngf < 2 or config.ngf % 2:
        raise ValueError(f"generator ngf must be an even number >= 2, got {config.ngf}")
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"generator dropout must be in [0, 1), got {config.dropout}")
    return GENERATORS[config.arch](config)


def build_discriminator(config: DiscriminatorConfig) -> MultiScaleDiscriminator:
    if config.scales < 1:
        raise ValueError(f"discriminator scales must be at least 1, got {config.scales}")
    if config.ndf < 2 or config.ndf % 2:
        raise ValueError(f"discriminator ndf must be an even number >= 2, got {config.ndf}")
    return MultiScaleDiscriminator(config)


def count_params(module: nn.Module) -> int:
    """Learnable parameters (buffers such as BN running statistics excluded)."""
    return sum(p.numel() for p in module.parameters())


def flop_counter() -> FlopCounterMode:
    """torch's FlopCounterMode with a convolution backward that counts grouped (depthwise)
    convolutions right, and the fused conv + activation calls as convolutions; what
    training's MFU and ``count_flops`` use."""
    return FlopCounterMode(display=False, custom_mapping=flop_formulas())


@torch.no_grad()
def count_flops(module: nn.Module, *inputs: torch.Tensor) -> int:
    """FLOPs of one eval-mode forward pass, counted by torch's FlopCounterMode.

    A multiply-add is 2 FLOPs; convolutions and matmuls are counted, elementwise work
    (norms, activations) is not.
    """
    was_training = module.training
    module.eval()
    counter = flop_counter()
    with counter:
        module(*inputs)
    module.train(was_training)
    return counter.get_total_flops()


def check_size(config: ModelConfig, size: int) -> None:
    """Raise ValueError, in one line, if size x size pictures cannot go through the config's
    generator and discriminator: tried on the meta device, so that a run is refused before
    it starts, not at its first step."""
    _on_meta(config, size)


def check_batch(config: ModelConfig, size: int, batch: int, with_disc: bool = True) -> None:
    """Raise ValueError, in one line, if a training batch of ``batch`` size x size pictures
    leaves a batch norm one value per channel (a batch of 1 through a 1x1 bottleneck), which
    torch refuses in training: tried on the meta device, before the run starts, through the
    generator and (``with_disc``: a GAN loss) the discriminator."""
    gen, disc = _on_meta(config, size)
    with torch.device("meta"):
        try:
            ab = gen.train()(torch.empty(batch, 1, size, size))
            if with_disc:
                disc.train()(torch.empty(batch, 1, size, size), ab)
        except ValueError:
            raise ValueError(
                f"a batch of {batch} at {size} px leaves a batch norm one value per channel "
                "(a 1x1 map): a larger batch or larger pictures"
            ) from None


def model_costs(config: ModelConfig, size: int) -> dict[str, float]:
    """Parameter counts and FLOPs per size x size frame of a config's generator and
    discriminator, measured on the meta device. Raises ValueError as ``check_size``."""
    gen, disc = _on_meta(config, size)
    with torch.device("meta"):
        l = torch.empty(1, 1, size, size)
        ab = torch.empty(1, 2, size, size)
        return {
            "g_params": count_params(gen),
            "g_flops": count_flops(gen, l),
            "d_params": count_params(disc),
            "d_flops": count_flops(disc, l, ab),
        }


def _on_meta(config: ModelConfig, size: int) -> tuple[Generator, MultiScaleDiscriminator]:
    """The config's generator and discriminator on the meta device (no memory, no weights),
    once a size x size picture has gone through the discriminator; ValueError, in one line,
    where either cannot take it. Spectral norm is left out: it adds no parameters, is folded
    away for inference, and its power iterations are slow to trace on the meta device."""
    g_config = dataclasses.replace(config.generator, spectral_norm=False)
    d_config = dataclasses.replace(config.discriminator, spectral_norm=False)
    with torch.device("meta"):
        gen = build_generator(g_config)
        multiple, least = gen.size_multiple, gen.min_size
        if size % multiple or size < least:
            raise ValueError(
                f"this generator takes sides that are multiples of {multiple} px and at least "
                f"{least} px, not {size} px"
            )
        disc = build_discriminator(d_config)
        try:
            disc.eval()(torch.empty(1, 1, size, size), torch.empty(1, 2, size, size))
        except (RuntimeError, ValueError):  # a kernel larger than its input; one-pixel norms
            raise ValueError(
                f"{size} px is too small for the discriminator's {d_config.scales} scales "
                "(each halves the picture): fewer scales, or larger pictures"
            ) from None
        disc.train()
    return gen, disc
