"""Shared test helpers: the shipped configs, optionally at a tiny width."""

import dataclasses
import sqlite3
from pathlib import Path

import numpy as np
from PIL import Image

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
# Recipes of our own beside the paper's: the bundled model's, and the pretrained-encoder U-Net's.
OWN_RECIPES = ("default", "lite0_unet")
PAPER_CONFIGS = [name for name in ALL_CONFIGS if name not in OWN_RECIPES]


# Small enough for seconds on a CPU, deep enough for 3 discriminator scales at 128 px.
SMALL = [
    "model.generator.ngf=8",
    "model.generator.depth=6",
    "model.discriminator.ndf=8",
    "train.image_size=128",
    "train.batch_size=2",
    "train.log_every=1",
    "train.checkpoint_every=2",
    "data.workers=0",
]


def small_config(name: str, *extra: str) -> Config:
    return load_config(resolve_config(name), [*SMALL, *extra])


def synthetic_photo(seed: int, size: int = 96) -> np.ndarray:
    """A colour image whose colours follow its structure: blobs of distinct hue and lightness."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.zeros((size, size, 3))
    for _ in range(4):
        cx, cy = rng.uniform(0.2, 0.8, 2)
        r = rng.uniform(0.15, 0.35)
        mask = ((x - cx) ** 2 + (y - cy) ** 2) < r**2
        image[mask] = rng.uniform(0, 1, 3)
    image += 0.3 * np.stack([x, y, 1 - x], axis=-1)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def write_photos(folder: Path, count: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        path = folder / f"photo{i:03d}.png"
        Image.fromarray(synthetic_photo(i)).save(path)
        paths.append(path)
    return paths


def ledger_rows(dst: Path) -> dict[str, sqlite3.Row]:
    """A batch ledger's rows by file, as SQLite gives them."""
    from vidcolour.batch.ledger import LEDGER_NAME

    db = sqlite3.connect(dst / LEDGER_NAME)
    db.row_factory = sqlite3.Row
    try:
        return {r["rel"]: r for r in db.execute("SELECT * FROM files")}
    finally:
        db.close()
