"""The ``vidcolour`` command line: a thin layer over the library.

Every user-facing failure is a ``VidcolourError``; the group turns it into one line on stderr
and exit status 1 (click's own usage errors exit with 2).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import click
import torch
from rich import box
from rich.console import Console
from rich.table import Table

from vidcolour import __version__
from vidcolour.config import Config, load_config, to_yaml
from vidcolour.errors import VidcolourError
from vidcolour.nets import build_discriminator, build_generator, count_flops, count_params
from vidcolour.resources import config_names, configs_dir, resolve_config

SET_HELP = "Override a config value, e.g. --set model.generator.ngf=32 (repeatable)."


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VidcolourError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vidcolour")
def main() -> None:
    """Colourise black-and-white film and video.

    \b
    Example:
      vidcolour models               # the paper's configurations and their costs
      vidcolour config ibn_sn_md --set model.generator.ngf=32
    """


def _model_costs(config: Config, size: int) -> dict[str, float]:
    """Parameter counts and FLOPs per size x size frame, measured on the meta device.

    Spectral norm is left out: it adds no parameters, is folded away for inference, and its
    power iterations are slow to trace on the meta device.
    """
    g_config = dataclasses.replace(config.model.generator, spectral_norm=False)
    d_config = dataclasses.replace(config.model.discriminator, spectral_norm=False)
    with torch.device("meta"):
        gen = build_generator(g_config)
        disc = build_discriminator(d_config)
        l = torch.empty(1, 1, size, size)
        ab = torch.empty(1, 2, size, size)
        return {
            "g_params": count_params(gen),
            "g_flops": count_flops(gen, l),
            "d_params": count_params(disc),
            "d_flops": count_flops(disc, l, ab),
        }


@main.command()
@click.option(
    "--size",
    type=click.IntRange(min=128),
    default=256,
    show_default=True,
    help="Frame side in pixels for the FLOP count (a multiple of 128).",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def models(size: int, overrides: tuple[str, ...]) -> None:
    """List the shipped configurations with their parameter counts and GFLOPs per frame.

    \b
    Example:
      vidcolour models --size 512 --set model.generator.upsample=nearest
    """
    if size % 128:
        raise VidcolourError(f"--size must be a multiple of 128, got {size}")
    table = Table(
        title=f"vidcolour configs, costs per {size}x{size} frame",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in ("config", "norm", "SN", "D scales"):
        table.add_column(column, no_wrap=True)
    for column in ("G params", "G GFLOP", "D params", "D GFLOP"):
        table.add_column(column, justify="right")
    for name in config_names():
        config = load_config(resolve_config(name), overrides)
        g, d = config.model.generator, config.model.discriminator
        costs = _model_costs(config, size)
        table.add_row(
            name,
            g.norm,
            "yes" if g.spectral_norm else "no",
            str(d.scales),
            f"{costs['g_params'] / 1e6:.2f}M",
            f"{costs['g_flops'] / 1e9:.2f}",
            f"{costs['d_params'] / 1e6:.2f}M",
            f"{costs['d_flops'] / 1e9:.2f}",
        )
    console = Console()
    console.print(table)
    console.print(
        f"Configs from {configs_dir()}. Upsampling: transposed convs unless the config says "
        "nearest (a stride-1 conv after the x2 upsampling: 4x the decoder's FLOPs). "
        "FLOPs counted by torch's FlopCounterMode on one frame (a multiply-add is 2 FLOPs; "
        "convolutions only); D counts all its scales."
    )


@main.command("config")
@click.argument("config", metavar="CONFIG")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def show_config(config: str, overrides: tuple[str, ...]) -> None:
    """Print the resolved CONFIG (a shipped name such as ibn_sn_md, or a YAML path).

    \b
    Example:
      vidcolour config ibn_sn_md --set model.generator.ngf=32 --set loss.gan=lsgan
    """
    click.echo(to_yaml(load_config(resolve_config(config), overrides)), nl=False)
