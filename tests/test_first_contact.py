"""Issue 24: what a new user meets first. Output that stays whole off a terminal, errors that
name the real problem in one line (no traceback), and usage errors that exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from tests.helpers import SMALL, write_photos
from tests.video_helpers import save_tiny_model
from vidcolour.cli import main
from vidcolour.video.synth import write_clip

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
