"""Issue 24 item 5: what users of DeOldify and DDColor reach for. --saturation (a gain on the
predicted chroma, before stabilisation) and --compare (input and colour side by side)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from tests.video_helpers import frames, save_tiny_model, times
from vidcolour.batch.runner import Settings
from vidcolour.cli import main
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


@pytest.mark.parametrize("rotation", [90, 270])
def test_compare_on_a_turned_video_is_side_by_side_as_shown(
    model: Path, tmp_path: Path, rotation: int
) -> None:
    """A phone's video, displayed turned a quarter: the halves are one above the other as
    coded, so that as shown the input is on the left and the colour on the right."""
    from vidcolour.video.orientation import display_matrix, orientation_of

    src = write_clip(
        tmp_path / "phone.mkv", frames=2, size=(48, 64), codec="ffv1", rotation=rotation
    )
    args = ("--model", model, "--resolution", "32", "--codec", "ffv1")
    assert cli("run", src, "-o", tmp_path / "plain.mkv", *args)[0] == 0
    assert cli("run", src, "-o", tmp_path / "side.mkv", "--compare", *args)[0] == 0
    plain, side = frames(tmp_path / "plain.mkv")[0], frames(tmp_path / "side.mkv")[0]
    assert (side.width, side.height) == (64, 96)  # coded: twice as tall
    turn = orientation_of(display_matrix(side))
    assert turn is not None and turn.transpose

    def shown(plane: np.ndarray) -> np.ndarray:
        return turn.upright(torch.from_numpy(plane.astype(np.int32))).numpy()

    u_side, u_plain = shown(planes(side)[1]), shown(planes(plain)[1])
    half = u_plain.shape[1]
    assert u_side.shape[1] == 2 * half
    assert (u_side[:, :half] == 128).all()  # left, as shown: the input, grey
    assert (u_side[:, half:] == u_plain).all()  # right: the colour


def test_start_and_duration_make_a_preview_of_that_stretch(model: Path, tmp_path: Path) -> None:
    src = write_clip(tmp_path / "reel.mkv", frames=100, size=(48, 64), codec="ffv1", audio="flac")
    out = tmp_path / "preview.mkv"
    code, output = cli("run", src, "-o", out, "--model", model, "--resolution", "32",
                       "--codec", "ffv1", "--start", "1.5", "--duration", "1")  # fmt: skip
    assert code == 0, output
    assert ": 25 frames" in output  # 1.52 s to 2.48 s at 25 fps
    source, preview = frames(src), frames(out)
    # Matroska has no negative times: the sound's lead-in before 1.5 s (part of a FLAC packet
    # of 96 ms) starts the file, and the picture follows it, in sync.
    first, lead = float(preview[0].time), sound(out).start
    assert lead == 0 and 0.02 <= first < 0.02 + 0.096 + 1e-3
    assert [round(float(f.time) - first, 3) for f in preview] == [
        round(float(f.time) - 1.52, 3) for f in source[38:63]
    ]
    for a, b in zip(source[38:63], preview, strict=True):
        assert (planes(a)[0] == planes(b)[0]).all()  # the same pictures
    heard = len(sound(out).samples)  # from 1.5 s less the lead-in to 2.5 s: DiscardPadding
    assert abs(heard - 48000 * (1 + first - 0.02)) <= 48


@dataclass
class Sound:
    start: float  # the first decoded sample's time, seconds
    samples: np.ndarray  # (n,) the left channel, float
    rate: int
    packet: int  # samples in the first packet


def sound(path: Path) -> Sound:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        decoded = list(container.decode(stream))
    left = [f.to_ndarray().reshape(-1, f.samples)[0] if f.format.is_planar else
            f.to_ndarray().reshape(f.samples, -1)[:, 0] for f in decoded]  # fmt: skip
    scale = 32768.0 if left[0].dtype == np.int16 else 1.0
    data = np.concatenate(left).astype(np.float64) / scale
    return Sound(float(decoded[0].time), data, stream.sample_rate, decoded[0].samples)


def lag(preview: Sound, source: Sound, source_start: float) -> int:
    """How many samples the preview's sound lies late against the source's, where the
    preview's time 0 is ``source_start`` in the source: 0 when in sync."""
    rate = source.rate
    window = preview.samples[round(0.3 * rate) : round(0.7 * rate)]  # away from both cuts
    at = round((source_start + preview.start + 0.3) * rate)
    reach = round(0.03 * rate)  # look for it 30 ms either side
    errors = [
        np.abs(source.samples[at + k : at + k + len(window)] - window).mean()
        for k in range(-reach, reach + 1)
    ]
    assert min(errors) < 0.01  # the same sound, found
    return reach - int(np.argmin(errors))


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_a_preview_s_sound_covers_its_stretch_in_sync(
    model: Path, tmp_path: Path, ext: str
) -> None:
    """AAC packets of 1024 samples (21.3 ms); the stretch 1.52 s + 1 s starts and ends inside
    one (at sample 72960 = 71.25 packets) and on a frame (38 at 25 fps)."""
    src = write_clip(tmp_path / "reel.mp4", frames=100, size=(48, 64), audio="aac", chirp=True)
    out = tmp_path / f"preview{ext}"
    code, output = cli("run", src, "-o", out, "--model", model, "--resolution", "32",
                       "--start", "1.52", "--duration", "1")  # fmt: skip
    assert code == 0, output
    picture, heard, whole = float(frames(out)[0].time), sound(out), sound(src)
    rate, packet = heard.rate, 1024
    if ext == ".mp4":  # an edit list trims the first packet to the stretch exactly
        assert abs(heard.start - picture) <= 1e-3 and abs(picture) <= 1e-3
        lead = 0
    else:  # the first packet's lead-in plays before the picture; DiscardPadding trims the end
        lead = round((picture - heard.start) * rate)
        assert 0 < lead < packet and abs(lead - 256) <= 48  # 1.52 s is 256 samples in
    extra = len(heard.samples) - lead - rate  # samples past the stretch's end
    if ext == ".mp4":  # FFmpeg decodes the last packet whole: up to one packet more
        assert 0 <= extra < packet
    else:
        assert abs(extra) <= 48
    assert abs(lag(heard, whole, 1.52 - picture)) <= 48  # in sync, within 1 ms


def test_a_preview_keeps_the_subtitle_showing_at_its_start(model: Path, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "reel.mkv", frames=75, size=(48, 64), codec="ffv1")
    srt = tmp_path / "lines.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nOne\n\n2\n00:00:01,000 --> "
                   "00:00:02,000\nTwo\n\n3\n00:00:02,000 --> 00:00:02,900\nThree\n")  # fmt: skip
    src = tmp_path / "subs.mkv"
    with av.open(str(clip)) as inp, av.open(str(srt)) as text, av.open(str(src), "w") as dst:
        video, lines = dst.add_stream_from_template(inp.streams.video[0]), None
        lines = dst.add_stream_from_template(text.streams[0])
        for packet in [*inp.demux(), *text.demux()]:
            if packet.size:
                packet.stream = video if packet.stream.type == "video" else lines
                dst.mux(packet)
    out = tmp_path / "preview.mkv"
    code, output = cli("run", src, "-o", out, "--model", model, "--resolution", "32",
                       "--codec", "ffv1", "--start", "1.5", "--duration", "1")  # fmt: skip
    assert code == 0, output
    with av.open(str(out)) as container:
        shown = [
            (round(float(p.pts * p.time_base), 3), round(float(p.duration * p.time_base), 3))
            for p in container.demux(subtitles=0)
            if p.size
        ]
    assert shown == [(0.0, 0.5), (0.5, 0.9)]  # "Two" from 1.5 s, clipped; "Three"


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


@pytest.mark.parametrize(
    ("name", "codec", "options"),
    [("tape.mkv", "ffv1", {}), ("broadcast.ts", "mpeg2video", {"g": "12", "bf": "2"})],
)
def test_a_preview_of_a_film_whose_times_start_late_starts_at_0(
    model: Path, tmp_path: Path, name: str, codec: str, options: dict[str, str]
) -> None:
    # Times from 1 h (a tape's timecode; FFmpeg's Matroska then announces 1 h more than the
    # film) and MPEG-TS, whose seek lands on the key frame after the point asked for.
    src = write_clip(tmp_path / name, frames=40, size=(48, 64), codec=codec,
                     pts=[90000 + i for i in range(40)], options=options)  # fmt: skip
    out = tmp_path / "preview.mkv"
    code, output = cli("run", src, "-o", out, "--model", model, "--resolution", "32",
                       "--codec", "ffv1", "--start", "0.6", "--duration", "0.4")  # fmt: skip
    assert code == 0, output
    assert ": 10 frames" in output and "announced" not in output
    assert [round(t, 2) for t in times(out)] == [round(0.04 * i, 2) for i in range(10)]
    for a, b in zip(frames(src)[15:25], frames(out), strict=True):
        assert (planes(a)[0] == planes(b)[0]).all()  # the stretch's pictures, none lost
    code, output = cli("run", src, "-o", tmp_path / "whole.mkv", "--model", model,
                       "--resolution", "32", "--codec", "ffv1", "--start", "2")  # fmt: skip
    assert code == 1 and "--start 2 s is past its end (1.6 s)" in output


def test_a_film_cut_short_says_so(model: Path, tmp_path: Path) -> None:
    src = write_clip(tmp_path / "reel.mkv", frames=40, size=(48, 64), codec="ffv1")
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])  # Matroska reads on
    code, output = cli("run", cut, "-o", tmp_path / "out.mkv", "--model", model,
                       "--resolution", "32", "--codec", "ffv1")  # fmt: skip
    assert code == 0, output
    assert "of the 1.60 s announced; the file may be cut short" in output
    # Whole films say nothing: one whose frame rate falls (25 fps, then 5: the announced
    # frame count, from the first rate, would be 2.5 times too many), and one whose times
    # start at 1 s in a Matroska file another writer made (its duration the span, 1.6 s).
    vfr = write_clip(tmp_path / "vfr.mkv", frames=40, size=(48, 64), codec="ffv1",
                     pts=[40 * i for i in range(20)] + [800 + 200 * i for i in range(20)],
                     time_base=Fraction(1, 1000))  # fmt: skip
    late = write_clip(tmp_path / "late.mkv", frames=40, size=(48, 64), codec="ffv1",
                      pts=[25 + i for i in range(40)])  # fmt: skip
    data = bytearray(late.read_bytes())
    at = data.index(b"\x44\x89")  # Segment Duration: 2600 ms, FFmpeg's last time
    data[at + 3 : at + 11] = struct.pack(">d", 1600.0)
    other = tmp_path / "other.mkv"
    data = data.replace(b"00:00:02.6", b"00:00:01.6")  # and the track's DURATION tag
    other.write_bytes(bytes(data).replace(b"Lavf", b"mkvm"))  # the writer's names
    for whole in (src, vfr, other):
        code, output = cli("run", whole, "-o", tmp_path / f"o{whole.name}", "--model", model,
                           "--resolution", "32", "--codec", "ffv1")  # fmt: skip
        assert code == 0 and ": 40 frames" in output and "announced" not in output, output
    code, output = cli("run", other, "-o", tmp_path / "p.mkv", "--model", model,
                       "--resolution", "32", "--codec", "ffv1", "--start", "1.2")  # fmt: skip
    assert code == 0 and ": 10 frames" in output, output  # not "past its end"
