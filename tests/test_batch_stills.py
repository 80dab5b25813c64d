"""Issue 24 item 6: `batch --stills` over a photo archive, with the ledger, resume, report and
mirrored tree of a video batch, and the stills' fidelity rules of `run` (size, precision,
transparency and metadata kept; what is not, and any colour already there, in the notices)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.video_helpers import save_tiny_model
from vidcolour.batch.ledger import LEDGER_NAME
from vidcolour.cli import main
from vidcolour.video.synth import grey_picture


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def batch(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["batch", *map(str, args), "--resolution", "32"])
    return result.exit_code, result.output


def statuses(dst: Path) -> dict[str, tuple[str, str | None]]:
    db = sqlite3.connect(dst / LEDGER_NAME)
    try:
        return {r: (s, n) for r, s, n in db.execute("SELECT rel, status, notices FROM files")}
    finally:
        db.close()


def photo_archive(root: Path) -> Path:
    (root / "1923" / "box2").mkdir(parents=True)
    Image.fromarray(grey_picture(0, 40, 56)).save(root / "a.png")
    deep = (grey_picture(1, 33, 47).astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(deep).save(root / "1923" / "deep.png")  # 16-bit grey
    sepia = grey_picture(2, 30, 44)[..., None] * np.array([1.0, 0.85, 0.65])
    Image.fromarray(sepia.astype(np.uint8)).save(root / "1923" / "box2" / "toned.jpg")
    (root / "1923" / "box2" / "broken.tif").write_bytes(b"II*\x00 not really a tiff")
    (root / "notes.txt").write_text("catalogue\n")
    return root


def test_batch_over_stills(model: Path, tmp_path: Path) -> None:
    src, dst = photo_archive(tmp_path / "photos"), tmp_path / "colour"
    code, output = batch(src, "-o", dst, "--model", model)  # no --stills: videos only
    assert code == 0 and "0 of 0 files" in output
    code, output = batch(src, "-o", dst, "--model", model, "--stills")
    assert code == 3, output  # one file failed
    assert "4 of 4 files" in output and "1 frame in" in output
    found = statuses(dst)
    assert {rel: s for rel, (s, _) in found.items()} == {
        "a.png": "done",
        "1923/deep.png": "done",
        "1923/box2/toned.jpg": "done",
        "1923/box2/broken.tif": "failed",
    }
    assert "is toned (sepia" in (found["1923/box2/toned.jpg"][1] or "")
    with Image.open(dst / "1923" / "deep.png") as image:  # mirrored, same size
        assert image.size == (47, 33)
    assert (dst / "1923" / "deep.png").read_bytes()[24] == 16  # and depth: IHDR's bit depth
    with Image.open(dst / "1923" / "box2" / "toned.jpg") as image:
        assert image.size == (44, 30) and image.format == "JPEG"
    code, output = batch(src, "-o", dst, "--model", model, "--stills")  # again: resumes
    assert code == 3 and "0 done now, 3 already done, 1 failed" in output
    report = CliRunner().invoke(main, ["report", str(dst)]).output
    assert "| 1923/deep.png | done |" in report
    assert "`1923/box2/broken.tif`: failed: " in report
