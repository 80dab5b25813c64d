"""`vidcolour run` on videos: everything but the colour is the input's (issue 5)."""

from __future__ import annotations

import shutil
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tests.video_helpers import frames, luma_psnr, packets, save_tiny_model, tags, times
from vidcolour import Colouriser
from vidcolour.colour import YCbCrCoding
from vidcolour.video.colourise import video_chroma
from vidcolour.video.synth import grey_copy, write_clip

BIKES = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "bikes.mp4"
VFR_MS = [0, 40, 80, 200, 240, 300, 420, 460, 500, 620, 640, 700]


@pytest.fixture(scope="module")
def colouriser(tmp_path_factory: pytest.TempPathFactory) -> Colouriser:
    path = save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")
    return Colouriser.load(path, "cpu", resolution=64)


@pytest.fixture(scope="module")
def vfr_mkv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """VFR, with a FLAC track, two chapters and a title."""
    return write_clip(
        tmp_path_factory.mktemp("src") / "vfr.mkv",
        pts=VFR_MS,
        time_base=Fraction(1, 1000),
        audio="flac",
        chapters=True,
        metadata={"title": "Test reel"},
    )


@pytest.mark.parametrize(("codec", "ext"), [("h264", ".mp4"), ("ffv1", ".mkv"), ("h264", ".mkv")])
def test_vfr_with_audio_keeps_frames_times_sound_and_tags(
    colouriser: Colouriser, vfr_mkv: Path, tmp_path: Path, codec: str, ext: str
) -> None:
    out = tmp_path / f"out{ext}"
    report = colouriser.colourise_video(vfr_mkv, out, codec=codec, batch_size=5)
    src, dst = frames(vfr_mkv), frames(out)
    assert report.frames == len(src) == len(dst) == len(VFR_MS)
    assert times(out) == pytest.approx([t / 1000 for t in VFR_MS], abs=1e-9)
    assert packets(out, "audio") == packets(vfr_mkv, "audio")  # byte for byte
    psnr = luma_psnr(src, dst)
    if codec == "ffv1":
        assert psnr == float("inf")  # the luma plane is the input's, exactly
    else:
        assert psnr >= 45
    assert tags(out)["title"] == "Test reel"
    assert (
        tags(out)["vidcolour"].startswith("vidcolour ")
        and colouriser.sha256 in tags(out)["vidcolour"]
    )
    with av.open(str(out)) as container:
        titles = [c["metadata"].get("title") for c in container.chapters()]
    assert titles == ["One", "Two"]
    chroma = np.frombuffer(dst[3].planes[1], np.uint8)
    assert np.abs(chroma.astype(int) - 128).max() > 0  # it did get colour


def test_aspect_rotation_kept_and_uncopyable_audio_reencoded(
    colouriser: Colouriser, tmp_path: Path
) -> None:
    src = write_clip(
        tmp_path / "pcm.mkv",
        frames=6,
        audio="pcm_s16le",
        rotation=90,
        options={"x264-params": "sar=16/15"},
    )
    out = tmp_path / "out.mp4"
    report = colouriser.colourise_video(src, out)
    assert report.notices == [
        "audio stream 1 (pcm_s16le) cannot go into this container (mp4); re-encoded as aac"
    ]
    with av.open(str(out)) as container:
        assert container.streams.video[0].sample_aspect_ratio == Fraction(16, 15)
        assert container.streams.audio[0].codec_context.name == "aac"
        assert next(container.decode(video=0)).rotation == 90
        samples = sum(f.samples for f in container.decode(audio=0))
    with av.open(str(src)) as container:
        assert samples >= sum(f.samples for f in container.decode(audio=0))


@pytest.mark.parametrize(
    ("codec", "ext", "kept"),
    [("h264", ".mkv", True), ("prores", ".mov", True), ("ffv1", ".mkv", False),
     ("ffv1", ".avi", False), ("prores", ".mkv", False)],
)  # fmt: skip
def test_pixel_aspect_kept_or_its_loss_said(
    colouriser: Colouriser, tmp_path: Path, codec: str, ext: str, kept: bool
) -> None:
    # Anamorphic PAL: a 720-wide picture shown 16:15 wider. Kept through the segments' join
    # (whose .mkv segments cannot record it) where the output's muxer or codec can hold it.
    src = write_clip(tmp_path / "pal.mp4", frames=4, options={"x264-params": "sar=16/15"})
    out = tmp_path / f"out{ext}"
    report = colouriser.colourise_video(src, out, codec=codec)
    with av.open(str(out)) as container:
        sar = container.streams.video[0].sample_aspect_ratio
    lost = [n for n in report.notices if "pixel aspect ratio 16/15" in n]
    assert (sar, len(lost)) == ((Fraction(16, 15), 0) if kept else (None, 1))


def test_output_has_colour_from_the_model(
    colouriser: Colouriser, vfr_mkv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.mkv"
    colouriser.colourise_video(vfr_mkv, out, codec="ffv1")
    frame = frames(out)[0]
    rgb = frame.to_ndarray(format="rgb24").astype(int)
    assert np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean() > 1


@pytest.mark.skipif(not BIKES.exists(), reason="shared data set not present")
def test_grey_copy_of_bikes(colouriser: Colouriser, tmp_path: Path) -> None:
    grey = grey_copy(BIKES, tmp_path / "bikes_grey.mp4", "libx264", {"crf": "12"})
    for codec, ext in [("h264", ".mp4"), ("ffv1", ".mkv")]:
        out = tmp_path / f"bikes{ext}"
        colouriser.colourise_video(grey, out, codec=codec)
        src, dst = frames(grey), frames(out)
        assert len(src) == len(dst) == 250
        assert times(out) == times(grey)
        psnr = luma_psnr(src, dst)
        print(f"bikes {codec}: luma PSNR {psnr:.2f} dB")
        assert psnr == float("inf") if codec == "ffv1" else psnr >= 45


def test_interlaced_keeps_field_order(colouriser: Colouriser, tmp_path: Path) -> None:
    src = write_clip(
        tmp_path / "tt.mkv", frames=4, size=(576, 720), codec="mpeg2video", field_order="tt"
    )
    for codec in ("h264", "ffv1"):
        out = tmp_path / f"out_{codec}.mkv"
        report = colouriser.colourise_video(src, out, codec=codec)
        assert any("interlaced (tt)" in n for n in report.notices)
        with av.open(str(out)) as container:
            assert container.streams.video[0].codec_context.field_order == 2  # tt
        decoded = frames(out)
        assert len(decoded) == 4 and (decoded[0].width, decoded[0].height) == (720, 576)
        if codec == "h264":
            assert all(f.interlaced_frame for f in decoded)  # coded as fields, not progressive


def test_fields_are_colourised_apart(
    colouriser: Colouriser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The generator never sees the combing of two fields woven into one frame."""
    seen: list[torch.Tensor] = []

    def record(L: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        seen.append(L)
        return L.new_zeros(L.shape[0], 2, *L.shape[2:])

    monkeypatch.setattr(colouriser, "predict_ab", record)
    woven = np.zeros((1, 64, 96), np.uint8)
    woven[:, 0::2], woven[:, 1::2] = 40, 200  # the two fields differ: a moving edge, say
    coding = YCbCrCoding("bt601", False, 8)
    cb, cr = video_chroma(colouriser, woven, coding, coding, (32, 48), fields=True)
    L = seen[0]
    assert L.shape[0] == 2  # one picture per field
    assert float((L[:, :, 1:] - L[:, :, :-1]).abs().max()) < 1e-3  # each field is flat: no comb
    assert cb.shape == cr.shape == (1, 32, 48)
    seen.clear()
    video_chroma(colouriser, woven, coding, coding, (32, 48), fields=False)
    assert float((seen[0][:, :, 1:] - seen[0][:, :, :-1]).abs().max()) > 10  # woven: combed


@pytest.mark.parametrize(("codec", "ext"), [("h264", ".mp4"), ("ffv1", ".mkv")])
def test_odd_size_is_kept(colouriser: Colouriser, tmp_path: Path, codec: str, ext: str) -> None:
    src = write_clip(tmp_path / "odd.mkv", frames=3, size=(241, 321), codec="ffv1")
    out = tmp_path / f"out{ext}"
    colouriser.colourise_video(src, out, codec=codec)
    decoded = frames(out)
    assert [(f.width, f.height) for f in decoded] == [(321, 241)] * 3
    psnr = luma_psnr(frames(src), decoded)
    assert psnr == float("inf") if codec == "ffv1" else psnr >= 40


def test_prores_master_is_10_bit_with_the_same_luma(colouriser: Colouriser, tmp_path: Path) -> None:
    src = write_clip(tmp_path / "src.mkv", frames=3, codec="ffv1")
    out = tmp_path / "master.mov"
    colouriser.colourise_video(src, out, codec="prores")
    decoded = frames(out)
    assert decoded[0].format.name == "yuv422p10le"
    assert luma_psnr(frames(src), decoded) >= 45  # ProRes is lossy (HQ), like h264 here


def test_grey_pixel_format_input(colouriser: Colouriser, tmp_path: Path) -> None:
    src = write_clip(tmp_path / "gray.mkv", frames=3, codec="ffv1", pix_fmt="gray")
    out = tmp_path / "out.mkv"
    colouriser.colourise_video(src, out, codec="ffv1")
    decoded = frames(out)
    assert decoded[0].format.name.startswith("yuv")
    assert luma_psnr(frames(src), decoded) == float("inf")


def test_colour_input_is_colourised_from_its_luma(colouriser: Colouriser, tmp_path: Path) -> None:
    src = write_clip(tmp_path / "colour.mkv", frames=3, codec="ffv1")
    with av.open(str(src)) as c:
        first = next(c.decode(video=0))
    tinted = tmp_path / "tinted.mkv"
    with av.open(str(tinted), "w") as out:
        v = out.add_stream("ffv1", rate=25)
        v.width, v.height, v.pix_fmt = first.width, first.height, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame(first.width, first.height, "yuv420p")
            np.frombuffer(frame.planes[0], np.uint8)[:] = 100
            np.frombuffer(frame.planes[1], np.uint8)[:] = 90
            np.frombuffer(frame.planes[2], np.uint8)[:] = 170
            frame.pts = i
            for p in v.encode(frame):
                out.mux(p)
        for p in v.encode(None):
            out.mux(p)
    report = colouriser.colourise_video(tinted, tmp_path / "out.mkv", codec="ffv1")
    # one tint all over (a toned film): said once, in those words (issue 24)
    assert sum("is toned (sepia" in n for n in report.notices) == 1


def test_damaged_packets_are_counted_and_timestamps_stay_consistent(
    colouriser: Colouriser, tmp_path: Path
) -> None:
    src = write_clip(tmp_path / "src.mkv", frames=60, size=(96, 128), options={"g": "10"})
    with av.open(str(src)) as container:
        where = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(1)
    for pos, size in where[20:40:3]:  # garbage in the middle of some frames' payloads
        start = pos + size // 4
        data[start : start + size // 2] = rng.integers(0, 256, size // 2, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mkv"
    damaged.write_bytes(bytes(data))
    out = tmp_path / "out.mkv"
    report = colouriser.colourise_video(damaged, out, codec="ffv1")
    assert report.stats.bad_packets + report.stats.corrupt_frames > 0
    assert "undecodable" in report.summary() or "damaged" in report.summary()
    expected = []  # what a player shows: every frame the decoder gives, at its own time
    with av.open(str(damaged)) as container:
        for packet in container.demux(video=0):
            try:
                expected += [float(f.pts * f.time_base) for f in packet.decode()]
            except av.InvalidDataError:
                continue
    got = times(out)
    assert len(got) == report.frames == len(expected)
    assert got == pytest.approx(expected) and got == sorted(set(got))


def test_several_inputs_into_a_directory(colouriser: Colouriser, tmp_path: Path) -> None:
    from vidcolour.run import plan_jobs

    a = write_clip(tmp_path / "a.mkv", frames=2)
    b = write_clip(tmp_path / "b.ts", frames=2)
    out = tmp_path / "out"
    out.mkdir()
    jobs = plan_jobs([a, b], out, "h264")
    assert [j.dst.name for j in jobs] == ["a.mkv", "b.mp4"]
    assert [j.dst.name for j in plan_jobs([a], out, "prores")] == ["a.mkv"]
    assert [j.dst.name for j in plan_jobs([b], out, "prores")] == ["b.mov"]


def test_copies_can_be_made_while_the_input_is_unchanged(
    colouriser: Colouriser, vfr_mkv: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src.mkv"
    shutil.copy(vfr_mkv, src)
    before = src.read_bytes()
    colouriser.colourise_video(src, tmp_path / "out.mp4")
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "src.mkv"]  # no temp left


def test_two_model_workers_keep_the_film_order(
    colouriser: Colouriser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks predicted side by side come back in the film's order, even when the later one
    is ready first: two workers write what one does, code for code (FFV1)."""

    def predict(L: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if threading.current_thread().name == "vidcolour-model0":
            time.sleep(0.05)  # chunks 0, 2, 4...: each ready after the one behind it
        return torch.cat([L - 50, 50 - L], dim=1) * 0.4  # each frame's colour from its own L

    monkeypatch.setattr(colouriser, "predict_ab", predict)
    src = write_clip(tmp_path / "src.mp4", frames=23, size=(64, 96))  # 6 chunks of 4, one of 3
    planes = {}
    for workers in (1, 2):
        out = tmp_path / f"workers{workers}.mkv"
        colouriser.colourise_video(src, out, codec="ffv1", batch_size=4, model_workers=workers)
        planes[workers] = [f.to_ndarray(format="yuv444p") for f in frames(out)]
    assert len(planes[2]) == 23
    assert all(np.array_equal(a, b) for a, b in zip(planes[1], planes[2], strict=True))
    chroma_means = {round(float(p[1:].mean()), 1) for p in planes[1]}
    assert len(chroma_means) > 5  # the frames' colours differ: an order mixed up would show


def test_a_failing_stage_is_reported_as_itself(vfr_mkv: Path, tmp_path: Path) -> None:
    """A stage that fails while the writer waits on it: its own error, not a bare 'pipeline
    stopped', and nothing at the destination."""
    broken = Colouriser.load(save_tiny_model(tmp_path / "tiny.safetensors"), "cpu", resolution=64)

    class ModelFault(Exception):
        pass

    def fail(*args: object) -> torch.Tensor:
        time.sleep(0.5)  # the writer is waiting on the model's queue by now
        raise ModelFault("the model failed")

    broken.generator.forward = fail  # type: ignore[method-assign]
    out = tmp_path / "out.mkv"
    with pytest.raises(ModelFault, match="the model failed"):
        broken.colourise_video(vfr_mkv, out, codec="ffv1")
    assert not out.exists()


def test_streams_no_output_keeps_are_named(colouriser: Colouriser, tmp_path: Path) -> None:
    src = tmp_path / "two.mkv"
    with av.open(str(src), "w") as out:
        streams = [out.add_stream("ffv1", rate=25) for _ in range(2)]
        out.add_attachment("font.ttf", "application/x-truetype-font", b"\0\1" * 50)
        for stream in streams:
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(3):
            for stream in streams:
                frame = av.VideoFrame.from_ndarray(np.full((48, 64), 60 * i, np.uint8), "gray")
                frame.pts = i
                out.mux(stream.encode(frame.reformat(format="yuv420p")))
        for stream in streams:
            out.mux(stream.encode())
    report = colouriser.colourise_video(src, tmp_path / "out.mkv", codec="ffv1")
    assert [n.split(" is left out")[0] for n in report.notices] == [
        "video stream 1 (ffv1)",
        "attachment stream 2 (font.ttf)",
    ]


def test_mp4_chapter_track_is_not_named_a_lost_stream(
    colouriser: Colouriser, tmp_path: Path
) -> None:
    """FFmpeg reads an MP4's chapters back as a data stream too (their text track, which it
    marks discarded); the chapters are kept, so no notice may call that stream left out."""
    src = write_clip(tmp_path / "chaptered.mp4", frames=4, size=(48, 64), chapters=True)
    with av.open(str(src)) as probe:
        assert [s.type for s in probe.streams] == ["video", "data"]  # the chapter track
    out = tmp_path / "out.mp4"
    report = colouriser.colourise_video(src, out)
    assert not [n for n in report.notices if "left out" in n]
    with av.open(str(out)) as result:
        assert [c["metadata"]["title"] for c in result.chapters()] == ["One", "Two"]


def test_mov_with_a_timecode_joins_its_segments(colouriser: Colouriser, tmp_path: Path) -> None:
    """A timecode tag on the picture makes FFmpeg's MOV muxer write a timecode track, which
    needs the stream's frame rate: the join's copied stream once had none, and every
    professional .mov with a timecode failed at the end of its film."""
    src = write_clip(
        tmp_path / "tc.mov", frames=4, size=(48, 64), metadata={"timecode": "01:00:00:00"}
    )
    for name in ("out.mov", "out.mp4"):
        report = colouriser.colourise_video(src, tmp_path / name)
        assert report.notices == [
            "data stream 1 is left out: vidcolour keeps one video, its sound and subtitles"
        ]
        with av.open(str(tmp_path / name)) as result:
            assert result.streams.video[0].frames == 4
            assert result.streams.video[0].metadata["timecode"] == "01:00:00:00"


def test_avi_says_it_loses_the_streams_languages(colouriser: Colouriser, tmp_path: Path) -> None:
    src = tmp_path / "dubbed.mkv"
    with av.open(str(src), "w") as out:
        video = out.add_stream("ffv1", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream("pcm_s16le", rate=8000, layout="mono")
        sound.metadata["language"] = "deu"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64), 90, np.uint8), "gray")
            frame.pts = i
            out.mux(video.encode(frame.reformat(format="yuv420p")))
            samples = av.AudioFrame.from_ndarray(np.zeros((1, 320), np.int16), "s16", "mono")
            samples.sample_rate, samples.pts = 8000, 320 * i
            out.mux(sound.encode(samples))
        out.mux(video.encode())
        out.mux(sound.encode())
    report = colouriser.colourise_video(src, tmp_path / "out.avi")
    assert [n for n in report.notices if "languages" in n] == [
        "avi cannot hold the streams' languages (1: deu): they are left out; use .mkv, .mp4 or "
        ".mov to keep them"
    ]
    report = colouriser.colourise_video(src, tmp_path / "out.mkv", codec="ffv1")
    assert not [n for n in report.notices if "languages" in n]
    with av.open(str(tmp_path / "out.mkv")) as container:
        assert container.streams.audio[0].metadata["language"] == "deu"
