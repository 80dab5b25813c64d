"""Rotated (phone) video: the model sees each picture as displayed (issue 18)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import av
import numpy as np
import pytest
import torch

from tests.video_helpers import frames, save_tiny_model
from vidcolour import Colouriser
from vidcolour.colour import YCbCrCoding
from vidcolour.video.colourise import video_chroma
from vidcolour.video.orientation import Orientation, display_matrix, orientation_of
from vidcolour.video.planes import Layout, luma_view, plane_array
from vidcolour.video.synth import grey_picture

SIZE = (80, 112)  # displayed (height, width): not square, and resized to the working size
# (counter-clockwise degrees, mirrored after), as PyAV's set_display_rotation takes them
TURNS = [(0, True), (90, False), (180, False), (270, False), (90, True), (270, True)]


@pytest.fixture(scope="module")
def colouriser(tmp_path_factory: pytest.TempPathFactory) -> Colouriser:
    # random weights: far from rotation-equivariant, so a sideways picture gets other colours
    path = save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")
    return Colouriser.load(path, "cpu", resolution=64)


def shown(coded: np.ndarray, degrees: int, hflip: bool) -> np.ndarray:
    """What a player shows for a coded (H, W) picture: turned counter-clockwise, then mirrored
    (numpy's own rot90, independent of vidcolour's matrix reading)."""
    out = np.rot90(coded, degrees // 90)
    return np.ascontiguousarray(out[:, ::-1] if hflip else out)


def coded_for(upright: np.ndarray, degrees: int, hflip: bool) -> np.ndarray:
    """The coded picture that a player shows as ``upright``."""
    out = upright[:, ::-1] if hflip else upright
    return np.ascontiguousarray(np.rot90(out, -degrees // 90))


def write_luma(path: Path, lumas: list[np.ndarray], degrees: int = 0, hflip: bool = False) -> Path:
    """A lossless 4:2:0 clip of these Y' planes, neutral chroma, with a display matrix."""
    height, width = lumas[0].shape
    with av.open(str(path), "w") as out:
        stream = cast(av.video.stream.VideoStream, out.add_stream("ffv1", rate=25))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if degrees or hflip:
            stream.set_display_rotation(degrees, hflip=hflip)
        layout = Layout("yuv420p", width, height)
        ch, cw = layout.chroma_size
        for i, y in enumerate(lumas):
            frame = av.VideoFrame(width, height, "yuv420p")
            luma_view(frame, layout)[:] = y
            for plane in frame.planes[1:]:
                plane_array(plane, ch, cw, np.dtype(np.uint8))[:] = 128
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def chroma(frame: av.VideoFrame) -> np.ndarray:
    """(2, h, w) Cb and Cr codes of a 4:2:0 frame."""
    layout = Layout(frame.format.name, frame.width, frame.height)
    h, w = layout.chroma_size
    return np.stack([plane_array(frame.planes[i], h, w, np.dtype(np.uint8)) for i in (1, 2)])


@pytest.mark.parametrize(("degrees", "hflip"), [*TURNS, (180, True)])
def test_matrix_read_from_a_file_turns_as_a_player_does(
    tmp_path: Path, degrees: int, hflip: bool
) -> None:
    coded = grey_picture(1, 6, 10)  # (H, W) that no turn maps onto itself
    path = write_luma(tmp_path / "r.mkv", [coded, coded], degrees, hflip)
    first = frames(path)[0]
    orientation = orientation_of(display_matrix(first))
    assert orientation is not None
    x = torch.from_numpy(coded.copy())
    up = orientation.upright(x)
    assert np.array_equal(up.numpy(), shown(coded, degrees, hflip))
    assert up.shape == orientation.turned(coded.shape)
    assert torch.equal(orientation.coded(up), x)


def test_no_matrix_and_odd_angles() -> None:
    assert orientation_of(None) == Orientation() and Orientation().identity
    c, s = (round(v * 65536) for v in (np.cos(np.pi / 6), np.sin(np.pi / 6)))
    assert orientation_of((c, -s, 0, s, c, 0, 0, 0, 1 << 30)) is None  # 30 degrees


@pytest.mark.parametrize(("degrees", "hflip"), TURNS)
def test_rotated_clip_colourised_as_its_upright_twin(
    colouriser: Colouriser, tmp_path: Path, degrees: int, hflip: bool
) -> None:
    """A rotated clip's chroma, turned as a player turns it, is the chroma of the same clip
    coded upright: the model (and the stabiliser) saw the displayed picture."""
    ups = [np.clip(grey_picture(i, *SIZE), 16, 235) for i in range(4)]
    upright = write_luma(tmp_path / "upright.mkv", ups)
    rotated = write_luma(
        tmp_path / "rotated.mkv", [coded_for(u, degrees, hflip) for u in ups], degrees, hflip
    )
    outs = {}
    for name, src in (("upright", upright), ("rotated", rotated)):
        outs[name] = tmp_path / f"{name}_out.mkv"
        colouriser.colourise_video(src, outs[name], codec="ffv1")
    want = [chroma(f) for f in frames(outs["upright"])]
    got = frames(outs["rotated"])
    assert display_matrix(got[0]) == display_matrix(frames(rotated)[0])  # kept, mirroring too
    turned = [np.stack([shown(p, degrees, hflip) for p in chroma(f)]) for f in got]
    for a, b in zip(turned, want, strict=True):
        diff = np.abs(a.astype(int) - b)
        assert diff.max() <= 1 and diff.mean() < 0.05  # float rounding only: 0.016 at most

    # The test can fail: the picture as coded, unturned, is colourised otherwise.
    coding = YCbCrCoding("bt601", False, 8)
    sideways = video_chroma(
        colouriser,
        np.stack([coded_for(ups[0], degrees, hflip)]),
        coding,
        coding,
        chroma(got[0]).shape[1:],
    )
    as_coded = np.stack([shown(c[0], degrees, hflip) for c in sideways])
    assert np.abs(as_coded.astype(int) - want[0]).mean() > 1.0  # 4.9 to 6.2 measured


def test_fields_are_the_coded_rows_and_turned_apart(
    colouriser: Colouriser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interlaced and rotated: each field is split from the coded frame's rows, then turned
    upright at the working size of the displayed frame."""
    seen: list[torch.Tensor] = []

    def record(L: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        seen.append(L)
        return L.new_zeros(L.shape[0], 2, *L.shape[2:])

    monkeypatch.setattr(colouriser, "predict_ab", record)
    woven = np.zeros((1, 64, 96), np.uint8)
    woven[:, 0::2], woven[:, 1::2] = 40, 200  # coded rows alternate: the two fields differ
    coding = YCbCrCoding("bt601", False, 8)
    turn = Orientation(transpose=True, flip_rows=True)  # 90 degrees counter-clockwise
    cb, cr = video_chroma(colouriser, woven, coding, coding, (32, 48), True, turn)
    L = seen[0]
    assert L.shape == (2, 1, *colouriser.working_size(96, 64))  # both fields, upright
    assert float(L.amax() - L.amin()) > 10 and float((L - L[:, :, :1, :1]).abs().max()) < 1e-3
    assert cb.shape == cr.shape == (1, 32, 48)


def test_rotation_not_a_right_angle_is_told(colouriser: Colouriser, tmp_path: Path) -> None:
    src = write_luma(tmp_path / "tilted.mkv", [grey_picture(0, 32, 48)] * 2, 30)
    report = colouriser.colourise_video(src, tmp_path / "out.mkv", codec="ffv1")
    assert any("not a multiple of 90" in n for n in report.notices)
    avi = colouriser.colourise_video(
        write_luma(tmp_path / "r.mkv", [grey_picture(0, 32, 48)] * 2, 90),
        tmp_path / "out.avi",
        codec="ffv1",
    )
    assert any("avi cannot hold" in n for n in avi.notices)


@pytest.mark.parametrize("suffix", [".mkv", ".mp4", ".mov", ".avi"])
def test_display_matrix_survives_where_the_container_holds_one(
    colouriser: Colouriser, tmp_path: Path, suffix: str
) -> None:
    """docs/VIDEO.md's table row: .mkv, .mp4 and .mov keep the whole matrix (mirroring too);
    AVI has no place for one, and a notice says so."""
    src = write_luma(tmp_path / "r.mkv", [grey_picture(0, 32, 48)] * 2, 90, hflip=True)
    out = tmp_path / f"out{suffix}"
    report = colouriser.colourise_video(src, out)  # the container's default codec
    with av.open(str(src)) as a, av.open(str(out)) as b:
        wanted = display_matrix(next(a.decode(video=0)))
        got = display_matrix(next(b.decode(video=0)))
    if suffix == ".avi":
        assert got is None and any("avi cannot hold" in n for n in report.notices)
    else:
        assert got is not None and orientation_of(got) == orientation_of(wanted)
