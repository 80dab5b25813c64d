import pytest
import yaml

from tests.helpers import ALL_CONFIGS, OWN_RECIPES, PAPER_CONFIGS, TABLE_I
from vidcolour.config import Config, ConfigError, from_dict, load_config, to_dict, to_yaml
from vidcolour.resources import config_names, resolve_config

# Table I rows: (G/D norm, spectral norm, discriminator scales)
LAYOUT = {
    "bn": ("bn", False, 1),
    "in": ("in", False, 1),
    "bn_sn": ("bn", True, 1),
    "in_sn": ("in", True, 1),
    "bn_sn_md": ("bn", True, 3),
    "ibn_sn_md": ("ibn", True, 3),
    "ibn_release_sn_md": ("ibn_release", True, 3),
}


def test_shipped_configs_are_table_one_plus_the_release_layout() -> None:
    assert set(TABLE_I) <= set(PAPER_CONFIGS)
    assert set(PAPER_CONFIGS) == set(LAYOUT)
    assert set(ALL_CONFIGS) == {*LAYOUT, *OWN_RECIPES}


def test_default_recipe_is_the_bundled_models() -> None:
    """configs/default.yaml: IBN + SN + MD at half width with the settings models/MODEL_CARD.md
    describes."""
    config = load_config(resolve_config("default"))
    g, d = config.model.generator, config.model.discriminator
    assert (g.norm, g.spectral_norm, d.scales, g.ngf, d.ndf, g.depth) == ("ibn", True, 3, 32, 32, 7)
    assert (config.loss.gan, config.loss.l1_weight) == ("nonsaturating", 1000.0)
    assert (config.train.epochs, config.optim.decay_epochs, config.train.ema) == (32, 16, 0.995)
    assert (config.data.resize, config.data.random_crop, config.data.hflip) == ("crop", True, True)


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_shipped_configs_pick_precision_per_device(name: str) -> None:
    """auto: bf16 where it is native; forcing bf16 on a CPU that emulates it costs tens of times."""
    assert load_config(resolve_config(name)).train.precision == "auto"


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_shipped_config_is_the_paper_recipe(name: str) -> None:
    config = load_config(resolve_config(name))
    g, d = config.model.generator, config.model.discriminator
    assert config.name == name
    assert (g.norm, g.spectral_norm, d.scales) == LAYOUT[name]
    assert (d.norm, d.spectral_norm) == (g.norm, g.spectral_norm)
    assert (g.ngf, g.depth, d.ndf) == (64, 7, 64)
    assert config.loss.gan == "nonsaturating" and config.loss.l1_weight == 100.0
    assert (config.optim.lr_g, config.optim.lr_d) == (2e-4, 2e-4)
    assert (config.optim.beta1, config.optim.beta2) == (0.5, 0.999)
    assert (config.train.batch_size, config.train.epochs, config.train.image_size) == (16, 200, 256)


def test_unknown_key_is_named(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  generator:\n    ngf: 8\n    colour: red\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'model\.generator\.colour'"):
        load_config(path)
    with pytest.raises(ConfigError, match="unknown config key 'trian'"):
        load_config(resolve_config("bn"), ["trian.epochs=3"])


def test_overrides_are_typed() -> None:
    config = load_config(
        resolve_config("ibn_sn_md"),
        ["model.generator.ngf=32", "optim.lr_g=1e-4", "loss.gan=lsgan", "train.epochs=3"],
    )
    assert config.model.generator.ngf == 32
    assert config.optim.lr_g == pytest.approx(1e-4) and isinstance(config.optim.lr_g, float)
    assert config.loss.gan == "lsgan"
    assert config.train.epochs == 3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.generator.norm=gn", "not one of bn, in, ibn, ibn_release"),
        ("train.epochs=many", "expected an integer"),
        ("train.epochs=2.5", "expected an integer"),
        ("model.generator.spectral_norm=1", "expected true or false"),
        ("optim.lr_g=fast", "expected a number"),
        ("no-equals-sign", "key.path=value"),
        ("model=3", "expected a mapping"),
        ("train.epochs=[1", "cannot parse value"),
    ],
)
def test_bad_overrides_say_why(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(resolve_config("bn"), [override])


def test_bad_files_give_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")


def test_resolved_config_round_trips_through_yaml(tmp_path) -> None:
    config = load_config(resolve_config("ibn_sn_md"), ["model.generator.ngf=16"])
    path = tmp_path / "resolved.yaml"
    path.write_text(to_yaml(config))
    assert load_config(path) == config
    assert from_dict(Config, to_dict(config)) == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=0", r"train\.epochs must be at least 1"),
        ("train.batch_size=0", r"train\.batch_size must be at least 1"),
        ("train.ema=1", r"train\.ema must be in \[0, 1\)"),
        ("optim.beta1=1.5", r"optim\.beta1 must be in \[0, 1\)"),
        ("optim.lr_g=-1", r"optim\.lr_g must be at least 0"),
        ("model.generator.dropout=1", r"model\.generator\.dropout must be in \[0, 1\)"),
        ("model.discriminator.scales=0", r"model\.discriminator\.scales must be at least 1"),
        ("data.workers=-1", r"data\.workers must be at least 0"),
        ("loss.gan_from_epoch=200", r"loss\.gan_from_epoch must be from 0 to train\.epochs - 1"),
        ("optim.freeze_encoder_epochs=-1", r"optim\.freeze_encoder_epochs must be at least 0"),
        ("optim.encoder_lr_scale=0", r"optim\.encoder_lr_scale must be in \(0, 1\], not 0"),
        ("optim.encoder_lr_scale=1.5", r"optim\.encoder_lr_scale must be in \(0, 1\], not 1\.5"),
        (
            "optim.freeze_encoder_epochs=201",
            r"optim\.freeze_encoder_epochs must be from 0 to train\.epochs \(200\), not 201",
        ),
    ],
)
def test_values_out_of_range_are_config_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(resolve_config("bn"), [override])


def test_the_encoder_may_stay_frozen_for_every_epoch() -> None:
    epochs = load_config(resolve_config("lite0_unet")).train.epochs
    config = load_config(resolve_config("lite0_unet"), [f"optim.freeze_encoder_epochs={epochs}"])
    assert config.optim.freeze_encoder_epochs == epochs


def test_every_shipped_config_is_in_range() -> None:
    for name in config_names():
        load_config(resolve_config(name))


def test_every_shipped_config_writes_every_key() -> None:
    """A shipped config is the whole recipe: no value left to the dataclasses' defaults."""

    def keys(data: dict, prefix: str = "") -> set[str]:
        found: set[str] = set()
        for key, value in data.items():
            path = f"{prefix}{key}"
            found |= keys(value, f"{path}.") if isinstance(value, dict) else {path}
        return found

    want = keys(to_dict(Config()))
    for name in config_names():
        written = keys(yaml.safe_load(resolve_config(name).read_text()))
        assert want - written == set(), name


def test_a_shipped_name_is_not_hidden_by_the_current_folder(tmp_path, monkeypatch) -> None:
    """A folder `in` or a file `default` where the command runs does not replace the shipped
    configs of those names; `./name` asks for the file."""
    from vidcolour.errors import VidcolourError
    from vidcolour.resources import configs_dir

    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "default").write_text("name: mine\n")
    assert resolve_config("in") == configs_dir() / "in.yaml"
    assert resolve_config("default") == configs_dir() / "default.yaml"
    assert load_config(resolve_config("./default")).name == "mine"
    with pytest.raises(VidcolourError, match="is a folder"):
        resolve_config("./in")
