"""Issue 21: keyframe-guided colour (`vidcolour frames`, `run --keyframes`)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.test_stabilise import picture
from tests.video_helpers import frames, luma, save_tiny_model
from vidcolour.cli import main
from vidcolour.colouriser import Colouriser
from vidcolour.errors import VidcolourError
from vidcolour.video.keyframes import (
    KeyframeGuide,
    Keyframes,
    apply_palette,
    find_keyframes,
    fit_palette,
)
from vidcolour.video.pipeline import VideoOptions, colourise_video
from vidcolour.video.synth import grey_copy, write_scenes

SIZE = (96, 128)
SHOT = 12


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[np.ndarray]]:
    """Three moving shots with cuts (colour, its grey copy) and the colour frames as RGB."""
    root = tmp_path_factory.mktemp("clip")
    colour = root / "colour.mkv"
    write_scenes(colour, [picture(i) for i in range(3)], frames_per_shot=SHOT, size=SIZE)
    rgb = [f.to_ndarray(format="rgb24") for f in frames(colour)]
    return colour, grey_copy(colour, root / "grey.mkv"), rgb


@pytest.fixture(scope="module")
def colouriser(tmp_path_factory: pytest.TempPathFactory) -> Colouriser:
    path = save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")
    return Colouriser.load(str(path), "cpu", resolution=64)


def paint(folder: Path, rgb: list[np.ndarray], at: list[int]) -> dict[int, Path]:
    folder.mkdir(exist_ok=True)
    paths = {}
    for n in at:
        paths[n] = folder / f"{n:06d}.png"
        Image.fromarray(rgb[n]).save(paths[n])
    return paths


def planes(path: Path) -> list[tuple[bytes, bytes, bytes]]:
    return [tuple(bytes(p) for p in f.planes) for f in frames(path)]  # type: ignore[misc]


def ab_error(path: Path, rgb: list[np.ndarray]) -> np.ndarray:
    """Per-frame mean |ab - ab_true| of an output against the colour frames."""
    import torch

    from vidcolour.colour import rgb_to_lab

    out = []
    for frame, truth in zip(frames(path), rgb, strict=True):
        pair = np.stack([frame.to_ndarray(format="rgb24"), truth]).astype(np.float32) / 255
        lab = rgb_to_lab(torch.from_numpy(pair).permute(0, 3, 1, 2))
        out.append(float((lab[0, 1:] - lab[1, 1:]).abs().mean()))
    return np.array(out)


# --------------------------------------------------------------------------- the guide itself
def test_palette_map_recovers_an_affine_colour_change() -> None:
    rng = np.random.default_rng(0)
    auto = rng.normal(0, 20, (2, 32, 32)).astype(np.float32)
    L = rng.uniform(10, 90, (32, 32)).astype(np.float32)
    m = np.array([[0.5, 0.2, 10.0, 3.0], [-0.1, 1.2, -5.0, 8.0]], np.float32)
    painted = apply_palette(m, auto, L)
    assert np.abs(fit_palette(auto, painted, L) - m).max() < 0.05


class _Painted(Keyframes):
    """Keyframes whose ab is given, not read from files."""

    def __init__(self, ab: dict[int, np.ndarray]) -> None:
        super().__init__({n: Path(f"{n}.png") for n in ab}, (16, 16))
        object.__setattr__(self, "_ab", ab)

    def ab(self, frame: int, size: tuple[int, int]) -> np.ndarray:
        return self._ab[frame]  # type: ignore[attr-defined, no-any-return]


def test_guide_holds_only_within_reach_and_never_crosses_a_cut() -> None:
    luma = (np.add.outer(np.arange(16), np.arange(16)) * 8).astype(np.uint8)
    auto = np.zeros((2, 16, 16), np.float32)
    red = np.full((2, 16, 16), 30.0, np.float32)
    guide = KeyframeGuide(_Painted({10: red}), reach=3)
    given: dict[int, np.ndarray] = {}
    for t in range(14):
        for index, ab in guide.push(t, cut=t == 12, luma=luma, auto=auto):
            given[index] = ab
        # frames 0-6 are out of reach of frame 10: none is held
        assert all(i in given for i in range(min(t + 1, 7)))
    given.update(guide.flush())
    assert sorted(given) == list(range(14)) and not guide.missed
    for t in range(7):  # out of reach: the automatic colour, exactly
        assert np.array_equal(given[t], auto)
    assert np.array_equal(given[10], red)
    for t in (7, 8, 9, 11):  # a still picture: carried whole, both ways
        assert np.allclose(given[t], red, atol=1e-3)
    for t in (12, 13):  # after the cut: automatic again
        assert np.array_equal(given[t], auto)


def test_guide_reports_keyframes_past_the_end() -> None:
    luma = np.zeros((16, 16), np.uint8)
    guide = KeyframeGuide(_Painted({99: np.zeros((2, 16, 16), np.float32)}))
    for t in range(5):
        guide.push(t, t == 0, luma, np.zeros((2, 16, 16), np.float32))
    assert len(guide.flush()) == 5 and guide.missed == [99]


# ----------------------------------------------------------------------------- the pipeline
@pytest.mark.parametrize("workers", [1, 2])
def test_keyframes_colour_their_shot_and_leave_the_others_bit_identical(
    clip: tuple[Path, Path, list[np.ndarray]], colouriser: Colouriser, tmp_path: Path, workers: int
) -> None:
    _, grey, rgb = clip
    auto, guided = tmp_path / "auto.mkv", tmp_path / "guided.mkv"
    colourise_video(colouriser, grey, auto, VideoOptions("ffv1", model_workers=workers))
    keyframes = paint(tmp_path / "kf", rgb, [SHOT + SHOT // 2])  # the middle shot only
    options = VideoOptions("ffv1", keyframes=keyframes, model_workers=workers)
    report = colourise_video(colouriser, grey, guided, options)
    assert report.frames == 3 * SHOT and report.cuts == [SHOT, 2 * SHOT]
    a, g = planes(auto), planes(guided)
    for t in [*range(SHOT), *range(2 * SHOT, 3 * SHOT)]:
        assert a[t] == g[t], f"frame {t} of a shot without keyframes changed"
    assert all(a[t][0] == g[t][0] for t in range(3 * SHOT))  # luma: the input's, always
    err_auto, err_guided = ab_error(auto, rgb), ab_error(guided, rgb)
    shot = slice(SHOT, 2 * SHOT)
    assert err_guided[shot].mean() < 0.5 * err_auto[shot].mean()


def test_brightened_keyframe_keeps_the_film_luma(
    clip: tuple[Path, Path, list[np.ndarray]], colouriser: Colouriser, tmp_path: Path
) -> None:
    _, grey, rgb = clip
    bright = [np.clip(f.astype(np.int16) + 60, 0, 255).astype(np.uint8) for f in rgb]
    keyframes = paint(tmp_path / "kf", bright, [5])
    out = tmp_path / "out.mkv"
    colourise_video(colouriser, grey, out, VideoOptions("ffv1", keyframes=keyframes))
    assert [luma(f).tobytes() for f in frames(out)] == [luma(f).tobytes() for f in frames(grey)]


def test_api_takes_keyframes(
    clip: tuple[Path, Path, list[np.ndarray]], colouriser: Colouriser, tmp_path: Path
) -> None:
    _, grey, rgb = clip
    paths = paint(tmp_path / "kf", rgb, [3])
    report = colouriser.colourise_video(
        grey, tmp_path / "api.mkv", codec="ffv1", keyframes={3: str(paths[3])}
    )
    assert report.frames == 3 * SHOT


# ------------------------------------------------------------------------------- bad input
def _run(grey: Path, out: Path, folder: Path, model: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(grey),
            "-o",
            str(out),
            "--model",
            str(model),
            "--resolution",
            "64",
            "--keyframes",
            str(folder),
        ],
    )
    return result.exit_code, result.output


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    return save_tiny_model(tmp_path / "tiny.safetensors")


@pytest.mark.parametrize(
    "case, expected",
    [
        ("past_end", "past the film's end"),
        ("aspect", "not the film's aspect ratio"),
        ("greyscale", "is greyscale"),
        ("unreadable", "cannot be read"),
        ("two_files", "two keyframes for frame 4"),
        ("no_number", "no frame number"),
        ("empty", "no keyframe images"),
        ("missing_folder", "does not exist"),
    ],
)
def test_bad_keyframes_are_refused_before_any_frame_is_written(
    clip: tuple[Path, Path, list[np.ndarray]], model: Path, tmp_path: Path, case: str, expected: str
) -> None:
    _, grey, rgb = clip
    folder = tmp_path / "kf"
    folder.mkdir()
    good = rgb[4]
    if case == "past_end":
        Image.fromarray(good).save(folder / "000500.png")
    elif case == "aspect":
        Image.fromarray(good[:, :64]).save(folder / "000004.png")
    elif case == "greyscale":
        Image.fromarray(good).convert("L").convert("RGB").save(folder / "000004.png")
    elif case == "unreadable":
        (folder / "000004.png").write_bytes(b"not a png")
    elif case == "two_files":
        Image.fromarray(good).save(folder / "000004.png")
        Image.fromarray(good).save(folder / "4_coat.jpg")
    elif case == "no_number":
        Image.fromarray(good).save(folder / "painted.png")
    elif case == "missing_folder":
        folder.rmdir()
    out = tmp_path / "out.mkv"
    code, output = _run(grey, out, folder, model)
    assert code == 1, output
    assert expected in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1, output
    assert not out.exists() and list(tmp_path.glob("*.mkv*")) == []


def test_resized_keyframe_of_the_same_aspect_is_scaled_with_a_notice(
    clip: tuple[Path, Path, list[np.ndarray]], model: Path, tmp_path: Path
) -> None:
    _, grey, rgb = clip
    folder = tmp_path / "kf"
    folder.mkdir()
    Image.fromarray(rgb[4]).resize((256, 192)).save(folder / "000004.png")
    code, output = _run(grey, tmp_path / "out.mkv", folder, model)
    assert code == 0, output
    assert "scaled to the film's 128x96" in output


def test_keyframes_need_one_video_input(
    clip: tuple[Path, Path, list[np.ndarray]], model: Path, tmp_path: Path
) -> None:
    with pytest.raises(VidcolourError, match="no keyframe images"):
        find_keyframes(tmp_path)
    colour, grey, rgb = clip
    folder = tmp_path / "kf"
    paint(folder, rgb, [2])
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(colour),
            str(grey),
            "-o",
            str(out),
            "--model",
            str(model),
            "--keyframes",
            str(folder),
        ],
    )
    assert result.exit_code == 2 and "give a single video input" in result.output
    assert list(out.iterdir()) == []


# --------------------------------------------------------------------------- vidcolour frames
def test_frames_writes_grey_pngs_numbered_as_shots_counts(
    clip: tuple[Path, Path, list[np.ndarray]], tmp_path: Path
) -> None:
    _, grey, _ = clip
    out = tmp_path / "to_paint"
    result = CliRunner().invoke(main, ["frames", str(grey), "--shots", "-o", str(out)])
    assert result.exit_code == 0, result.output
    middles = [SHOT // 2, SHOT + SHOT // 2, 2 * SHOT + SHOT // 2]
    assert sorted(p.name for p in out.iterdir()) == [f"{n:06d}.png" for n in middles]
    with av.open(str(grey)) as container:
        frame = next(f for i, f in enumerate(container.decode(video=0)) if i == middles[1])
    image = np.asarray(Image.open(out / f"{middles[1]:06d}.png"))
    assert image.shape == SIZE and image.dtype == np.uint8
    expected = np.clip((luma(frame).astype(np.float32) - 16) / 219 * 255, 0, 255).round()
    assert np.abs(image.astype(np.float32) - expected).max() <= 1
    again = CliRunner().invoke(main, ["frames", str(grey), "--at", "3", "-o", str(out)])
    assert again.exit_code == 0
    past = CliRunner().invoke(main, ["frames", str(grey), "--at", "36", "-o", str(out)])
    assert past.exit_code == 1 and "past its end" in past.output
    assert not (out / "000036.png").exists()
    both = CliRunner().invoke(main, ["frames", str(grey), "-o", str(out)])
    assert both.exit_code == 2


# ----------------------------------------------------------------------------------- batch
def test_batch_reads_sidecar_keyframes_and_redoes_only_the_file_they_change(
    clip: tuple[Path, Path, list[np.ndarray]], model: Path, tmp_path: Path
) -> None:
    import shutil
    import sqlite3

    from vidcolour.batch.ledger import LEDGER_NAME

    _, grey, rgb = clip
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for name in ("a.mkv", "b.mkv"):
        shutil.copy(grey, src / name)

    def batch() -> dict[str, tuple[int, str]]:
        result = CliRunner().invoke(
            main, ["batch", str(src), "-o", str(dst), "--model", str(model), "--resolution", "64"]
        )
        assert result.exit_code == 0, result.output
        db = sqlite3.connect(dst / LEDGER_NAME)
        try:
            return {
                r[0]: (r[1], r[2]) for r in db.execute("SELECT rel, attempts, settings FROM files")
            }
        finally:
            db.close()

    first = batch()
    assert set(first) == {"a.mkv", "b.mkv"}
    paint(src / "a.mkv.keyframes", rgb, [5])  # a colourist paints one frame of a.mkv
    second = batch()
    assert second["b.mkv"] == first["b.mkv"]  # untouched
    assert second["a.mkv"][0] == 2 and second["a.mkv"][1] != first["a.mkv"][1]
    assert "keyframes" in second["a.mkv"][1]
    assert set(second) == {"a.mkv", "b.mkv"}  # the sidecar's images are not inputs
    assert batch() == second  # nothing changed: nothing redone
    painted = np.ascontiguousarray(rgb[5][:, ::-1])  # the colourist changes the frame
    Image.fromarray(painted).save(src / "a.mkv.keyframes" / "000005.png")
    third = batch()
    assert third["a.mkv"][0] == 3 and third["b.mkv"] == first["b.mkv"]


def test_interlaced_input_with_keyframes_is_refused(
    clip: tuple[Path, Path, list[np.ndarray]], model: Path, tmp_path: Path
) -> None:
    from vidcolour.video.synth import write_clip

    interlaced = write_clip(tmp_path / "tt.mpg", frames=6, codec="mpeg2video", field_order="tt")
    folder = tmp_path / "kf"
    paint(folder, clip[2], [2])
    code, output = _run(interlaced, tmp_path / "out.mkv", folder, model)
    assert code == 1 and "interlaced" in output and "Traceback" not in output
