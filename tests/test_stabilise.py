"""Issue 8: cuts, chroma stabilisation, `vidcolour shots` and `vidcolour eval-video`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from tests.video_helpers import frames, luma, save_tiny_model
from vidcolour.cli import main
from vidcolour.colouriser import Colouriser
from vidcolour.video.evaluate import evaluate_video
from vidcolour.video.pipeline import VideoOptions, colourise_video
from vidcolour.video.shots import cuts_of, mark_cuts, signature
from vidcolour.video.source import Chunk
from vidcolour.video.stabilise import Stabiliser
from vidcolour.video.synth import grey_copy, write_scenes

SIZE = (96, 128)


def picture(seed: int, size: tuple[int, int] = (192, 256)) -> np.ndarray:
    """(H, W, 3) uint8: smooth random colour with a few hard-edged blocks (texture for flow)."""
    rng = np.random.default_rng(seed)
    coarse = (rng.random((6, 8, 3)) * 255).astype(np.uint8)
    rgb = np.asarray(Image.fromarray(coarse).resize(size[::-1], Image.Resampling.BICUBIC)).copy()
    for _ in range(12):
        y, x = rng.integers(0, size[0] - 24), rng.integers(0, size[1] - 24)
        rgb[y : y + rng.integers(8, 24), x : x + rng.integers(8, 24)] = rng.integers(0, 256, 3)
    return rgb


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[int]]:
    """A colour clip of three moving shots with grain and exposure flicker, and its grey copy."""
    root = tmp_path_factory.mktemp("scenes")
    colour = root / "colour.mkv"
    cuts = write_scenes(
        colour,
        [picture(i) for i in range(3)],
        frames_per_shot=12,
        size=SIZE,
        grain=6.0,
        exposure_flicker=0.03,
    )
    return colour, grey_copy(colour, root / "grey.mkv"), cuts


@pytest.fixture(scope="module")
def colouriser(tmp_path_factory: pytest.TempPathFactory) -> Colouriser:
    path = save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")
    return Colouriser.load(str(path), "cpu", resolution=64)


def lumas(path: Path) -> list[np.ndarray]:
    return [luma(f).astype(np.uint8) for f in frames(path)]


# ------------------------------------------------------------------------------- cuts
def test_cuts_found_where_planted(scenes: tuple[Path, Path, list[int]]) -> None:
    _, grey, cuts = scenes
    assert cuts == [12, 24]
    assert cuts_of(signature(y) for y in lumas(grey)) == cuts


def test_fades_and_flashes_are_not_cuts(scenes: tuple[Path, Path, list[int]]) -> None:
    ys = lumas(scenes[1])
    flash = [y.copy() for y in ys]
    flash[5] = np.clip(flash[5].astype(np.float32) * 1.8 + 60, 0, 255).astype(np.uint8)
    flash[17] = np.full_like(flash[17], 255)  # a white frame
    assert cuts_of(signature(y) for y in flash) == [12, 24]
    # a fade to black and back inside the first shot, and one through black across the cut
    fade = [(y * min(1.0, abs(i - 6) / 4)).astype(np.uint8) for i, y in enumerate(ys[:12])]
    fade += [(y * min(1.0, abs(i - 12) / 5)).astype(np.uint8) for i, y in enumerate(ys[12:24], 12)]
    assert cuts_of(signature(y) for y in fade[:12]) == []
    out_in = [(y * max(0.0, 1 - i / 5)).astype(np.uint8) for i, y in enumerate(ys[:6])]
    out_in += [(y * min(1.0, i / 5)).astype(np.uint8) for i, y in enumerate(ys[12:20])]
    assert cuts_of(signature(y) for y in out_in) == []


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_mark_cuts_keeps_order_across_chunks(
    scenes: tuple[Path, Path, list[int]], batch: int
) -> None:
    ys = lumas(scenes[1])
    chunks = [
        Chunk(list(range(len(ys[i : i + batch]))), np.stack(ys[i : i + batch]), packets=[i])  # type: ignore[arg-type]
        for i in range(0, len(ys), batch)
    ]
    chunks.insert(1, Chunk([], np.zeros((0, 0, 0), np.uint8), packets=["sound"]))  # type: ignore[list-item]
    marked = list(mark_cuts(iter(chunks), 8))
    assert [c.packets for c in marked] == [c.packets for c in chunks]
    flags = [cut for c in marked for cut in c.cuts]
    assert [i for i, cut in enumerate(flags) if cut] == [12, 24]


def test_shots_command(scenes: tuple[Path, Path, list[int]], tmp_path: Path) -> None:
    out = tmp_path / "shots.json"
    result = CliRunner().invoke(main, ["shots", str(scenes[1]), "--json", str(out)])
    assert result.exit_code == 0, result.output
    shots = json.loads(out.read_text())["shots"]
    assert [s["first_frame"] for s in shots] == [0, 12, 24]
    assert [s["frames"] for s in shots] == [12, 12, 12]
    assert shots[1]["time"] == pytest.approx(12 / 25)
    result = CliRunner().invoke(main, ["shots", str(tmp_path / "nope.mp4")])
    assert result.exit_code == 1 and "no such file" in result.output


# ------------------------------------------------------------------------- stabiliser
def test_stabiliser_steadies_a_still_picture_and_resets_at_cuts() -> None:
    rng = np.random.default_rng(0)
    y = (picture(0, (64, 80))[..., 1]).copy()
    truth = np.full((2, 64, 80), 10.0, np.float32)
    stabiliser = Stabiliser(0.8)
    outs, preds = [], []
    for t in range(30):
        pred = truth + rng.normal(0, 4, truth.shape).astype(np.float32)  # per-frame jitter
        preds.append(pred)
        outs.append(stabiliser.step(y, pred, cut=t == 20))
    assert outs[0] is preds[0] and outs[20] is preds[20]  # the first frame of each shot: as is
    jitter = np.std(np.stack(outs[10:20]), axis=0).mean()
    assert jitter < 0.5 * np.std(np.stack(preds[10:20]), axis=0).mean()
    assert outs[21].dtype == np.float32


def test_stabiliser_trusts_the_fresh_prediction_where_the_picture_changed() -> None:
    y = picture(1, (64, 80))[..., 1].copy()
    stabiliser = Stabiliser(0.9)
    stabiliser.step(y, np.zeros((2, 64, 80), np.float32), cut=False)
    changed = y.copy()
    changed[16:48, 20:60] = 255 - changed[16:48, 20:60]  # new content in the middle
    out = stabiliser.step(changed, np.full((2, 64, 80), 30.0, np.float32), cut=False)
    assert out[:, 24:40, 30:50].mean() > 25  # the new content takes the new colour
    assert out[:, :8].mean() < 10  # unchanged content keeps the carried colour


def test_strength_zero_is_per_frame() -> None:
    stabiliser = Stabiliser(0.0)
    y = picture(2, (32, 32))[..., 0].copy()
    for value in (1.0, 5.0):
        pred = np.full((2, 32, 32), value, np.float32)
        assert stabiliser.step(y, pred, cut=False) is pred
    with pytest.raises(ValueError):
        Stabiliser(1.0)


# --------------------------------------------------------------------------- pipeline
def _run(colouriser: Colouriser, src: Path, dst: Path, **options: object) -> list[int]:
    report = colourise_video(colouriser, src, dst, VideoOptions("ffv1", **options))  # type: ignore[arg-type]
    return report.cuts or []


def _chroma(path: Path) -> list[np.ndarray]:
    return [np.stack([np.frombuffer(f.planes[i], np.uint8) for i in (1, 2)]) for f in frames(path)]


def test_pipeline_stabilises_within_shots_only(
    colouriser: Colouriser, scenes: tuple[Path, Path, list[int]], tmp_path: Path
) -> None:
    _, grey, cuts = scenes
    steady, plain = tmp_path / "steady.mkv", tmp_path / "plain.mkv"
    assert _run(colouriser, grey, steady) == cuts
    assert _run(colouriser, grey, plain, stabilise=False) == []
    for ours, theirs in zip(lumas(steady), lumas(grey), strict=True):
        assert np.array_equal(ours, theirs)  # luma untouched
    a, b = _chroma(steady), _chroma(plain)
    for t in [0, *cuts]:  # the first frame of every shot is the per-frame prediction
        assert np.array_equal(a[t], b[t]), t
    assert sum(not np.array_equal(x, y) for x, y in zip(a, b, strict=True)) > len(a) // 2
    zero = tmp_path / "zero.mkv"
    _run(colouriser, grey, zero, strength=0.0)
    assert all(np.array_equal(x, y) for x, y in zip(_chroma(zero), b, strict=True))


class Jittery(torch.nn.Module):
    """A stand-in generator whose colour follows the picture but wobbles from call to call, as
    a per-frame colouriser does on grainy film: ab = 0.4 tanh(l) + noise."""

    size_multiple, min_size = 16, 16

    def __init__(self) -> None:
        super().__init__()
        self.noise = torch.Generator().manual_seed(0)

    def forward(self, l: torch.Tensor) -> torch.Tensor:
        wobble = torch.randn((l.shape[0], 2, 1, 1), generator=self.noise) * 0.1
        return 0.4 * torch.tanh(torch.cat([l, -l], 1)) + wobble


def test_stabilisation_removes_flicker(
    scenes: tuple[Path, Path, list[int]], tmp_path: Path
) -> None:
    colour, grey, _ = scenes
    scores = {}
    for stabilise in (True, False):
        jittery = Colouriser(Jittery(), device="cpu", precision="fp32", resolution=64)  # type: ignore[arg-type]
        out = tmp_path / f"{stabilise}.mkv"
        _run(jittery, grey, out, stabilise=stabilise)
        scores[stabilise] = evaluate_video(out, colour)["mean"]
    assert scores[True]["cdc_ab"] < 0.7 * scores[False]["cdc_ab"]
    assert scores[True]["cdc"] < scores[False]["cdc"]
    assert scores[True]["warp_error"] < scores[False]["warp_error"]


def test_run_cli_options(
    tmp_path: Path, scenes: tuple[Path, Path, list[int]], colouriser: Colouriser
) -> None:
    model = save_tiny_model(tmp_path / "tiny.safetensors")
    out = tmp_path / "out.mp4"
    args = ["run", str(scenes[1]), "-o", str(out), "--model", str(model), "--resolution", "64"]
    result = CliRunner().invoke(main, [*args, "--strength", "0.5"])
    assert result.exit_code == 0 and "3 shots" in result.output, result.output
    result = CliRunner().invoke(main, [*args, "--overwrite", "--no-stabilise"])
    assert result.exit_code == 0 and "shots" not in result.output
    result = CliRunner().invoke(main, [*args, "--overwrite", "--strength", "1"])
    assert result.exit_code == 2


# -------------------------------------------------------------------------- eval-video
def test_eval_video_json(scenes: tuple[Path, Path, list[int]], tmp_path: Path) -> None:
    colour, grey, _ = scenes
    out = tmp_path / "scores.json"
    args = ["eval-video", str(colour), "--reference", str(colour), "--json", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["schema"] == "vidcolour.eval-video/1" and doc["frames"] == 36
    assert len(doc["per_frame"]) == 36 and doc["per_frame"][0]["warp_error"] is None
    mean = doc["mean"]
    assert mean["ab_l1"] == 0 and mean["ab_psnr"] is None  # identical: no finite PSNR
    assert mean["colourfulness_ratio"] == pytest.approx(1.0)
    assert 0 < mean["cdc"] < 1 and 0 < mean["cdc_ab"] < 1 and mean["warp_error"] > 0
    grey_scores = evaluate_video(grey)
    assert grey_scores["mean"]["colourfulness"] < 1 and "ab_l1" not in grey_scores["mean"]


def test_eval_video_refuses_a_short_reference(
    scenes: tuple[Path, Path, list[int]], tmp_path: Path
) -> None:
    short = tmp_path / "short.mkv"
    grey_copy(scenes[0], short, frames=range(10))
    result = CliRunner().invoke(main, ["eval-video", str(scenes[0]), "--reference", str(short)])
    assert result.exit_code == 1 and "same number of frames" in result.output
    assert "Traceback" not in result.output
