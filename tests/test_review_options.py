"""Issue 24 item 5: what users of DeOldify and DDColor reach for. --saturation (a gain on the
predicted chroma, before stabilisation) and --compare (input and colour side by side)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from tests.video_helpers import frames, save_tiny_model
from vidcolour.batch.runner import Settings
from vidcolour.cli import MAX_SATURATION, main
from vidcolour.colouriser import MAX_SATURATION as API_MAX
from vidcolour.colouriser import Colouriser
from vidcolour.errors import VidcolourError
from vidcolour.video.synth import grey_picture, write_clip


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def planes(frame: av.VideoFrame) -> list[np.ndarray]:
    return [
        np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width].copy()
        for p in frame.planes
    ]


def test_saturation_scales_the_predicted_ab(model: Path) -> None:
    L = torch.rand(1, 1, 64, 96) * 100
    plain = Colouriser.load(model, "cpu", precision="fp32").predict_ab(L)
    strong = Colouriser.load(model, "cpu", precision="fp32", saturation=1.5).predict_ab(L)
    assert torch.allclose(strong, 1.5 * plain, atol=1e-5)
    assert MAX_SATURATION == API_MAX
    with pytest.raises(VidcolourError, match="saturation must be in"):
        Colouriser.load(model, "cpu", saturation=-1)


def test_saturation_zero_leaves_a_still_grey(model: Path, tmp_path: Path) -> None:
    src = tmp_path / "grey.png"
    Image.fromarray(grey_picture(0, 40, 56)).save(src)
    code, output = cli("run", src, "-o", tmp_path / "out.png", "--model", model,
                       "--saturation", "0", "--resolution", "32")  # fmt: skip
    assert code == 0, output
    rgb = np.asarray(Image.open(tmp_path / "out.png").convert("RGB")).astype(int)
    assert np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max() <= 1


def test_batch_records_saturation_only_when_set() -> None:
    plain = Settings("h264", None, None, None, 256, "auto")
    assert "saturation" not in plain.key()  # a ledger from before the option still matches
    assert (
        '"saturation": 1.2' in Settings("h264", None, None, None, 256, "auto", saturation=1.2).key()
    )


def test_compare_still(model: Path, tmp_path: Path) -> None:
    src = tmp_path / "grey.png"
    grey = grey_picture(0, 40, 56)
    Image.fromarray(grey).save(src)
    args = ("--model", model, "--resolution", "32")
    assert cli("run", src, "-o", tmp_path / "plain.png", *args)[0] == 0
    code, output = cli("run", src, "-o", tmp_path / "side.png", "--compare", *args)
    assert code == 0, output
    plain = np.asarray(Image.open(tmp_path / "plain.png").convert("RGB"))
    side = np.asarray(Image.open(tmp_path / "side.png").convert("RGB"))
    assert side.shape == (40, 112, 3)
    assert (side[:, :56] == grey[..., None]).all()  # the input, grey
    assert (side[:, 56:] == plain).all()  # the colour, as without --compare


def test_compare_video(model: Path, tmp_path: Path) -> None:
    src = write_clip(tmp_path / "clip.mkv", frames=4, size=(48, 64), codec="ffv1")
    args = ("--model", model, "--resolution", "32", "--codec", "ffv1")
    assert cli("run", src, "-o", tmp_path / "plain.mkv", *args)[0] == 0
    code, output = cli("run", src, "-o", tmp_path / "side.mkv", "--compare", *args)
    assert code == 0, output
    plain, side = frames(tmp_path / "plain.mkv"), frames(tmp_path / "side.mkv")
    assert len(side) == len(plain) == 4
    for p, s in zip(plain, side, strict=True):
        assert (s.width, s.height, s.pts) == (128, 48, p.pts)
        (py, pu, pv), (sy, su, sv) = planes(p), planes(s)
        assert (sy[:, :64] == py).all() and (sy[:, 64:] == py).all()  # luma both sides
        half = pu.shape[1]
        assert (su[:, :half] == 128).all() and (sv[:, :half] == 128).all()  # left: grey
        assert (su[:, half:] == pu).all() and (sv[:, half:] == pv).all()  # right: the colour


def test_start_and_duration_make_a_preview_of_that_stretch(model: Path, tmp_path: Path) -> None:
    src = write_clip(tmp_path / "reel.mkv", frames=100, size=(48, 64), codec="ffv1", audio="flac")
    out = tmp_path / "preview.mkv"
    code, output = cli("run", src, "-o", out, "--model", model, "--resolution", "32",
                       "--codec", "ffv1", "--start", "1.5", "--duration", "1")  # fmt: skip
    assert code == 0, output
    assert ": 25 frames" in output  # 1.52 s to 2.48 s at 25 fps
    source, preview = frames(src), frames(out)
    assert [round(float(f.time), 2) for f in preview] == [
        round(float(f.time) - 1.5, 2) for f in source[38:63]
    ]
    for a, b in zip(source[38:63], preview, strict=True):
        assert (planes(a)[0] == planes(b)[0]).all()  # the same pictures
    with av.open(str(out)) as container:
        sound = [float(p.pts * p.time_base) for p in container.demux(audio=0) if p.pts is not None]
    assert sound and 0 <= min(sound) < 0.1 and max(sound) < 1.0  # that stretch's sound only


def test_stretch_errors(model: Path, tmp_path: Path) -> None:
    src = write_clip(tmp_path / "reel.mkv", frames=10, size=(48, 64), codec="ffv1")
    code, output = cli("run", src, "-o", tmp_path / "o.mkv", "--model", model,
                       "--codec", "ffv1", "--start", "60")  # fmt: skip
    assert code == 1 and "--start 60 s is past its end (0.4 s)" in output
    still = tmp_path / "still.png"
    Image.fromarray(grey_picture(0, 40, 56)).save(still)
    code, output = cli("run", still, "-o", tmp_path / "o.png", "--model", tmp_path / "none",
                       "--duration", "2")  # fmt: skip
    assert code == 2 and "apply to videos, not the still" in output
