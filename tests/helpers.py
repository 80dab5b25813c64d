"""Shared test helpers: the shipped configs, optionally at a tiny width."""

import dataclasses

from vidcolour.config import Config, load_config
from vidcolour.resources import config_names, resolve_config

TABLE_I = ["bn", "in", "bn_sn", "in_sn", "bn_sn_md", "ibn_sn_md"]


def shipped(name: str, **generator: object) -> Config:
    config = load_config(resolve_config(name))
    model = dataclasses.replace(
        config.model,
        generator=dataclasses.replace(config.model.generator, **generator),
    )
    return dataclasses.replace(config, model=model)


def tiny(name: str, **generator: object) -> Config:
    """A shipped config at width 8 (G and D): same layout, ~1/64 of the compute."""
    config = shipped(name, ngf=8, **generator)
    model = dataclasses.replace(
        config.model, discriminator=dataclasses.replace(config.model.discriminator, ndf=8)
    )
    return dataclasses.replace(config, model=model)


ALL_CONFIGS = config_names()
