"""Issue 24: what a new user meets first. Output that stays whole off a terminal, errors that
name the real problem in one line (no traceback), and usage errors that exit 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import yaml
from click.testing import CliRunner, Result
from PIL import Image

from tests.helpers import SMALL, write_photos
from tests.video_helpers import save_tiny_model
from vidcolour.cli import main
from vidcolour.video.synth import grey_picture, write_clip

LONG = "a_film_with_a_name_much_longer_than_eighty_columns_as_archives_have_them_1923_reel_04"


def cli(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result: Result, message: str) -> None:
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.output  # not an uncaught error
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clip")
    return write_clip(folder / f"{LONG}.mkv", frames=6, size=(48, 64), codec="ffv1")


# ------------------------------------------------------------------ 1. off a terminal
def test_tables_and_titles_are_not_wrapped_off_a_terminal(clip: Path) -> None:
    result = cli("shots", clip)
    assert result.exit_code == 0, result.output
    assert f"{clip}: 1 shot" in result.stdout  # the whole path on one line, and "1 shot"
    result = cli("eval-video", clip)
    assert result.exit_code == 0, result.output
    assert f"{clip}: 6 frames" in result.stdout


def test_json_dash_is_the_only_thing_on_stdout(clip: Path) -> None:
    result = cli("shots", clip, "--json", "-")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["frames"] == 6
    assert "1 shot" in result.stderr  # the table, for people, on stderr
    result = cli("eval-video", clip, "--json", "-")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["frames"] == 6


def test_train_dry_run_prints_valid_yaml_on_stdout(tmp_path: Path) -> None:
    write_photos(tmp_path / "photos", 4)
    sets = [x for s in SMALL for x in ("--set", s)]
    result = cli("train", "--data", tmp_path / "photos", "--out", tmp_path / "run", "--dry-run",
                 "--device", "cpu", *sets)  # fmt: skip
    assert result.exit_code == 0, result.output
    plan = yaml.safe_load(result.stdout)
    assert plan["model"]["generator"]["ngf"] == 8
    assert "steps per epoch" in result.stderr


# ------------------------------------------------------------------ 4. short runs
@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5-step run whose logging window (10) and checkpoint interval are longer than it."""
    root = tmp_path_factory.mktemp("short")
    write_photos(root / "train", 12)
    write_photos(root / "val", 2, start=50)
    sets = [x for s in [*SMALL, "train.log_every=10", "train.checkpoint_every=100"]
            for x in ("--set", s)]  # fmt: skip
    result = cli("train", "--config", "ibn_sn_md", "--data", root / "train", "--val",
                 root / "val", "--out", root / "run", "--max-steps", "5", "--device", "cpu",
                 *sets)  # fmt: skip
    assert result.exit_code == 0, result.output
    return root / "run"


def test_short_train_logs_first_and_last_steps_and_samples(short_run: Path) -> None:
    records = [json.loads(line) for line in (short_run / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps == [1, 5]
    assert all("loss_g_l1" in r for r in records if r["kind"] == "train")
    assert [r["step"] for r in records if r["kind"] == "val"] == [5]
    assert (short_run / "samples" / "step-000000005.png").is_file()
    assert (short_run / "checkpoints" / "step-000000005.pt").is_file()


# ------------------------------------------------------------------ 2. model files
def test_export_takes_a_run_directory_and_refuses_a_pt_name(
    short_run: Path, tmp_path: Path
) -> None:
    result = cli("export", short_run, "-o", tmp_path / "mine.pt")
    assert result.exit_code == 2  # a usage error, before any work
    assert "name the file mine.safetensors, not mine.pt" in result.output
    assert not (tmp_path / "mine.pt").exists()
    out = tmp_path / "mine.safetensors"
    result = cli("export", short_run, "-o", out)
    assert result.exit_code == 0, result.output
    assert "from step-000000005.pt" in result.output and out.is_file()
    before = out.read_bytes()
    one_line_error(cli("export", short_run, "-o", out, "--half"), "exists; add --overwrite")
    assert out.read_bytes() == before
    result = cli("export", short_run, "-o", out, "--half", "--overwrite")
    assert result.exit_code == 0, result.output
    assert out.stat().st_size < len(before)


def _fakes(folder: Path) -> dict[str, Path]:
    import torch

    folder.mkdir(exist_ok=True)
    fakes = {
        "state_dict": folder / "state_dict.pt",  # a torch file, not a vidcolour checkpoint
        "no_config": folder / "no_config.pt",  # claims the format, lacks the parts
        "text": folder / "text.pt",
        "empty": folder / "empty.pt",
        "code": folder / "code.pt",  # pickles an object: torch's weights_only refuses it
    }
    torch.save({"conv.weight": torch.zeros(2)}, fakes["state_dict"])
    torch.save({"format": "vidcolour.checkpoint", "step": 3}, fakes["no_config"])
    fakes["text"].write_text("not a model\n" * 20)
    fakes["empty"].write_bytes(b"")
    torch.save({"format": "vidcolour.checkpoint", "x": Path("/")}, fakes["code"])
    return fakes


@pytest.mark.parametrize(
    ("fake", "message"),
    [
        ("state_dict", "is not a vidcolour training checkpoint"),
        ("no_config", "is not a complete vidcolour checkpoint: no 'config'"),
        ("text", "it is text"),
        ("empty", "it is empty"),
        ("code", "holds Python objects besides tensors"),
    ],
)
def test_bad_model_files_are_one_line(fake: str, message: str, clip: Path, tmp_path: Path) -> None:
    path = _fakes(tmp_path / "fakes")[fake]
    for result in (
        cli("run", clip, "-o", tmp_path / "out.mkv", "--model", path, "--codec", "ffv1"),
        cli("export", path, "-o", tmp_path / "out.safetensors"),
    ):
        one_line_error(result, message)
        assert "weights_only" not in result.output and "arbitrary code" not in result.output
    assert not (tmp_path / "out.mkv").exists() and not (tmp_path / "out.safetensors").exists()


def test_a_model_is_read_by_its_content_not_its_name(
    model: Path, clip: Path, tmp_path: Path
) -> None:
    misnamed = tmp_path / "mine.pt"  # what `export -o mine.pt` used to write
    misnamed.write_bytes(model.read_bytes())
    result = cli("run", clip, "-o", tmp_path / "out.mkv", "--model", misnamed,
                 "--codec", "ffv1", "--resolution", "32")  # fmt: skip
    assert result.exit_code == 0, result.output
    result = cli("export", model, "-o", tmp_path / "again.safetensors")
    one_line_error(result, "is not a checkpoint: it is a safetensors weights file")


# ------------------------------------------------------------------ 3. errors that name the problem
def test_a_trailing_slash_makes_the_output_folder(model: Path, clip: Path, tmp_path: Path) -> None:
    still = tmp_path / "still.png"
    Image.fromarray(grey_picture(0, 40, 56)).save(still)
    out = tmp_path / "coloured"
    result = cli("run", clip, still, "-o", f"{out}/", "--model", model, "--codec", "ffv1",
                 "--resolution", "32")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [clip.name, "still.png"]
    result = cli("run", clip, "-o", f"{tmp_path / 'one'}/", "--model", model,
                 "--codec", "ffv1", "--resolution", "32")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "one" / clip.name).is_file()


def test_a_directory_input_points_to_batch(model: Path, clip: Path, tmp_path: Path) -> None:
    result = cli("run", clip.parent, "-o", f"{tmp_path / 'new'}/", "--model", model)
    one_line_error(result, "is a directory: run takes video and image files")
    assert "vidcolour batch" in result.output and result.exit_code == 2
    assert not (tmp_path / "new").exists()


def test_encoder_options_are_checked_before_any_work(clip: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no_model.safetensors"  # loading it would fail: it must not be reached
    for args, message in [
        (("--preset", "bogus"), "unknown --preset 'bogus'"),
        (("--tune", "grain,bogus"), "unknown --tune 'bogus' for h264"),
        (("--codec", "h265", "--tune", "film"), "unknown --tune 'film' for h265"),
        (("--codec", "ffv1", "--preset", "slow"), "apply to h264 and h265, not ffv1"),
    ]:
        result = cli("run", clip, "-o", tmp_path / "out.mkv", "--model", missing, *args)
        one_line_error(result, message)
        assert result.exit_code == 2
    result = cli("batch", clip.parent, "-o", tmp_path / "dst", "--model", missing,
                 "--preset", "bogus")  # fmt: skip
    one_line_error(result, "unknown --preset 'bogus'")
    assert not (tmp_path / "dst").exists()


def test_every_listed_encoder_option_is_taken_by_the_encoder(tmp_path: Path) -> None:
    from vidcolour.video.codecs import PRESETS, TUNES

    for codec, encoder in (("h264", "libx264"), ("h265", "libx265")):
        for preset, tune in [*((p, None) for p in PRESETS), *(("fast", t) for t in TUNES[codec])]:
            context = av.CodecContext.create(encoder, "w")
            context.width, context.height, context.pix_fmt = 64, 64, "yuv420p"
            context.time_base = Fraction(1, 25)
            context.options = {"preset": preset, **({"tune": tune} if tune else {})}
            context.open()  # raises on a name the encoder does not know


def test_a_still_under_a_video_name_is_refused(model: Path, tmp_path: Path) -> None:
    fake = tmp_path / "reel.mp4"
    Image.fromarray(grey_picture(0, 40, 56)).save(fake, format="JPEG")
    result = cli("run", fake, "-o", tmp_path / "out.mp4", "--model", model)
    one_line_error(result, "is a still image (JPEG), not a video: give it an image extension")
    assert not (tmp_path / "out.mp4").exists()


def test_one_frame_one_shot(model: Path, tmp_path: Path) -> None:
    src = write_clip(tmp_path / "single.mkv", frames=1, size=(48, 64), codec="ffv1")
    result = cli("run", src, "-o", tmp_path / "o.mkv", "--model", model, "--codec", "ffv1",
                 "--resolution", "32")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert ": 1 frame, 1 shot in " in result.output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_importing_is_one_line(tmp_path: Path, sig: signal.Signals) -> None:
    """Ctrl-C, or SIGTERM (Slurm's, Kubernetes'), before a command has its own handler (torch
    importing, made to take long by a stand-in that sleeps; the model loading: seconds on a
    busy node): one line and exit 130, as docs/BATCH.md's exit statuses say, no traceback and
    not killed by the signal (143; found by a random kill soak)."""
    fake = tmp_path / "slow"
    fake.mkdir()
    marker = tmp_path / "importing"
    (fake / "torch.py").write_text(
        f"import pathlib, time\npathlib.Path({str(marker)!r}).touch()\ntime.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), *sys.path])}
    process = subprocess.Popen(
        [sys.executable, "-m", "vidcolour", "models"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip() == "Error: interrupted"


# ------------------------------------------------------------------ 4. eval, notices
def test_eval_uses_the_bundled_model_and_labels_its_samples(tmp_path: Path) -> None:
    write_photos(tmp_path / "photos", 3)
    plots = tmp_path / "plots"
    result = cli("eval", "--data", tmp_path / "photos", "--size", "64", "--no-effnet",
                 "--no-semantic", "--plots", plots, "--json", "-", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    [evaluated] = document["colourisers"]
    assert evaluated["source"] == "default" and evaluated["name"].startswith("default")
    with Image.open(plots / "samples.png") as grid:
        labels = np.asarray(grid.convert("L"))[:16]
    assert labels.min() < 128  # text in the label row above the pictures
    assert (labels > 250).mean() > 0.5  # on white


def test_toned_prints_get_one_plain_notice(model: Path, tmp_path: Path) -> None:
    sepia = np.array([1.0, 0.85, 0.65])  # a warm tint, stronger in the light tones
    for i in range(3):
        grey = grey_picture(i, 40, 56).astype(np.float64)
        Image.fromarray((grey[..., None] * sepia).astype(np.uint8)).save(tmp_path / f"p{i}.png")
    prints = [tmp_path / f"p{i}.png" for i in range(3)]
    result = cli("run", *prints, "-o", f"{tmp_path / 'out'}/", "--model", model,
                 "--resolution", "32")  # fmt: skip
    assert result.exit_code == 0, result.output
    notices = [line for line in result.output.splitlines() if line.startswith("notice:")]
    assert len(notices) == 1, result.output
    assert "is toned (sepia" in notices[0] and "the tint is replaced by new colour" in notices[0]
