"""Outputs that cannot be written, for every command that writes one: one line, exit 1, no
traceback, nothing half-written. A file standing where a folder should be fails the same way,
as a read-only mount or a full disk does, without root."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.helpers import write_photos
from vidcolour.cli import main
from vidcolour.errors import VidcolourError
from vidcolour.fsutil import atomic_path
from vidcolour.video.synth import write_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=4)


@pytest.fixture
def blocked(tmp_path: Path) -> Path:
    """A path whose folder is a plain file: nothing can be made there."""
    (tmp_path / "file").write_text("not a folder")
    return tmp_path / "file" / "out"


def one_line_failure(*args: str | Path) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and errors == lines[-1:], result.output
    return lines[-1]


def test_folders_that_cannot_be_made(clip: Path, blocked: Path, tmp_path: Path) -> None:
    """The system's refusal, in one line naming the path (before: a traceback)."""
    message = one_line_failure("frames", clip, "--at", "0", "-o", blocked)
    assert message.startswith(f"Error: {blocked}")
    photos = tmp_path / "photos"
    write_photos(photos, 2)
    train = ("train", "--data", photos, "--out", blocked, "--set", "train.batch_size=2")
    assert one_line_failure(*train).startswith(f"Error: {blocked}")


def test_reports_are_refused_before_the_work(clip: Path, blocked: Path, tmp_path: Path) -> None:
    """--json and --plots are checked before the work they report on."""
    message = one_line_failure("shots", clip, "--json", blocked.parent / "shots.json")
    assert message.endswith("--json folder " + f"{blocked.parent} is a file, not a folder")
    photos = tmp_path / "photos"
    write_photos(photos, 2)
    evaluate = ("eval", "--data", photos, "--baseline", "grey", "--no-effnet", "--no-semantic")
    message = one_line_failure(*evaluate, "--plots", blocked)
    assert message.endswith(f"--plots folder {blocked.parent} is a file, not a folder")


def test_atomic_path_in_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(VidcolourError, match="cannot write"), atomic_path(tmp_path / "a" / "b"):
        pass
