"""Every output container x every codec the CLI allows in it, from clips with sound (issue 18).

Each combination is colourised from the command line and read back: the frame count, every
frame's time, where the picture starts against the sound, the provenance tag, the colour tags,
subtitles, chapters and the title. Where a container cannot keep something the run must say so
in a notice; docs/VIDEO.md's table "What each container keeps" is this test's expectations.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import pytest
from click.testing import CliRunner

from tests.video_helpers import frames, save_tiny_model
from vidcolour.cli import main
from vidcolour.video.sink import CONTAINER_CODECS, read_provenance, with_provenance
from vidcolour.video.synth import write_clip

CASES = [
    (ext, codec) for ext in sorted(CONTAINER_CODECS) for codec in sorted(CONTAINER_CODECS[ext])
]
VFR_MS = [0, 40, 80, 200, 240, 300, 420, 460, 500, 620, 640, 700]
# Colour tags (AVColorRange, AVColorPrimaries, AVColorTransferCharacteristic, AVColorSpace)
# that differ from one another and from every default: tv, bt470m, bt709, bt470bg.
ALL_TAGS = {
    "color_range": "tv",
    "color_primaries": "bt470m",
    "color_trc": "bt709",
    "colorspace": "bt470bg",
}
# The coding vidcolour computes new chroma in, and so tags, where the input leaves a tag
# unspecified (2; 0 for the range): limited range, BT.601's matrix below 720 lines.
TV, SMPTE170M = 1, 6


@dataclass(frozen=True)
class Keeps:
    """What a container keeps, as FFmpeg writes and reads it."""

    timestamps: bool  # False: only a frame rate, so times are kept to the nearest frame
    colour: bool  # range, matrix, primaries and transfer (for the codecs it holds)
    subtitles: bool  # SubRip as such (MP4 and MOV hold only their own mov_text)
    chapters: bool


KEEPS = {
    ".mkv": Keeps(timestamps=True, colour=True, subtitles=True, chapters=True),
    ".mp4": Keeps(timestamps=True, colour=True, subtitles=False, chapters=True),
    ".mov": Keeps(timestamps=True, colour=True, subtitles=False, chapters=True),
    ".avi": Keeps(timestamps=False, colour=False, subtitles=False, chapters=False),
}
# Matroska and MP4 edit lists count in milliseconds: a start rounds by up to 1 ms in each stream.
EXACT_S = 0.002
AAC_PACKET_S = 1024 / 48000  # one AAC frame at the clips' 48 kHz
FAST = ["--resolution", "64"]


@dataclass(frozen=True)
class Clip:
    path: Path
    vfr: bool = False


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Clip]:
    folder = tmp_path_factory.mktemp("sources")
    return {
        # Issue 18's clip of defect 3: MPEG-2 in a program stream, B-frames, MP2 sound
        # starting 10 ms before the picture, tagged limited range and nothing else.
        "mpeg-ps": Clip(
            write_clip(
                folder / "tv.mpg",
                frames=8,
                size=(64, 96),
                codec="mpeg2video",
                audio="mp2",
                options={"color_range": "tv"},
            )
        ),
        # Issue 18's clip of defect 1: MPEG-4 Part 2 in AVI with PCM sound, 15 fps.
        "avi-pcm": Clip(
            write_clip(
                folder / "pcm.avi",
                frames=8,
                size=(64, 96),
                codec="mpeg4",
                rate=15,
                audio="pcm_s16le",
            )
        ),
        # AAC in MP4, as FFmpeg writes it: the first sound packet is the encoder's priming,
        # before 0 (MP4's edit list hides it); in AVI it once moved every frame a slot late.
        "mp4-aac": Clip(write_clip(folder / "aac.mp4", frames=8, size=(64, 96), audio="aac")),
        # Variable frame timing, FLAC, SubRip subtitles, chapters, a title, every colour tag.
        "mkv-vfr": Clip(_with_subtitles(folder, _vfr_clip(folder)), vfr=True),
    }


def _vfr_clip(folder: Path) -> Path:
    return write_clip(
        folder / "vfr.mkv",
        size=(64, 96),
        pts=VFR_MS,
        time_base=Fraction(1, 1000),
        audio="flac",
        chapters=True,
        metadata={"title": "Test reel"},
        options=ALL_TAGS,
    )


def _with_subtitles(folder: Path, clip: Path) -> Path:
    srt = folder / "lines.srt"
    srt.write_text(
        "1\n00:00:00,000 --> 00:00:00,300\nOne\n\n2\n00:00:00,300 --> 00:00:00,600\nTwo\n"
    )
    out = folder / "vfr_subs.mkv"
    with av.open(str(clip)) as inp, av.open(str(srt)) as text, av.open(str(out), "w") as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in inp.streams}
        subtitles = dst.add_stream_from_template(text.streams[0])
        dst.metadata.update(inp.metadata)
        dst.set_chapters(inp.chapters())
        for packet in inp.demux():
            if packet.size:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
        for packet in text.demux():
            if packet.size:
                packet.stream = subtitles
                dst.mux(packet)
    return out


@dataclass(frozen=True)
class Reading:
    """What a file holds, as a player built on FFmpeg sees it."""

    times: list[float]  # every frame's, seconds
    rate: Fraction
    audio_start: float | None  # seconds
    colour: tuple[int, int, int, int]  # range, primaries, transfer, matrix of the first frame
    provenance: str | None
    title: str | None
    subtitles: int
    chapters: list[str | None]


def read(path: Path) -> Reading:
    decoded = frames(path)
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        start = None
        if audio is not None and audio.start_time is not None and audio.time_base:
            start = float(audio.start_time * audio.time_base)
        tags = {k.lower(): v for k, v in container.metadata.items()}
        first = decoded[0]
        return Reading(
            times=[float(f.time) for f in decoded],
            rate=video.guessed_rate or video.average_rate or Fraction(25),
            audio_start=start,
            colour=(first.color_range, first.color_primaries, first.color_trc, first.colorspace),
            provenance=read_provenance(tags),
            title=tags.get("title"),
            subtitles=len(container.streams.subtitles),
            chapters=[c["metadata"].get("title") for c in container.chapters()],
        )


@pytest.mark.parametrize("source", ["mpeg-ps", "avi-pcm", "mp4-aac", "mkv-vfr"])
@pytest.mark.parametrize(("ext", "codec"), CASES, ids=[f"{e[1:]}-{c}" for e, c in CASES])
def test_container_keeps_what_it_can_and_says_what_it_cannot(
    model: Path, sources: dict[str, Clip], tmp_path: Path, source: str, ext: str, codec: str
) -> None:
    clip = sources[source]
    out = tmp_path / f"out{ext}"
    result = CliRunner().invoke(
        main,
        ["run", str(clip.path), "-o", str(out), "--codec", codec, "--model", str(model), *FAST],
    )
    assert result.exit_code == 0, result.output
    notices = [line for line in result.output.splitlines() if line.startswith("notice:")]
    src, dst, keeps = read(clip.path), read(out), KEEPS[ext]

    assert len(dst.times) == len(src.times)
    half = 0.5 / float(dst.rate)
    shift = 0.0
    if keeps.timestamps:
        # Matroska has no negative times: sound that starts before 0 (AAC's priming, which
        # MP4's edit list hides) moves every stream by that lead-in, together (docs/VIDEO.md).
        shift = dst.times[0] - src.times[0] if ext == ".mkv" else 0.0
        lead_in = AAC_PACKET_S if source == "mp4-aac" else 0.0
        assert -EXACT_S <= shift <= lead_in + EXACT_S
        assert dst.times == pytest.approx([t + shift for t in src.times], abs=EXACT_S)
    else:  # the clock starts at the first frame, and each frame is on the frame rate's grid
        pairs = zip(dst.times, src.times, strict=True)
        off = max(abs((d - dst.times[0]) - (s - src.times[0])) for d, s in pairs)
        said = any("stores only a frame rate" in n for n in notices)
        assert off <= half + 1e-6 or (clip.vfr and said), (dst.times, src.times, notices)
    assert src.audio_start is not None and dst.audio_start is not None
    lead, lead_out = src.times[0] - src.audio_start, dst.times[0] - dst.audio_start
    assert lead_out == pytest.approx(lead + shift, abs=EXACT_S if keeps.timestamps else half)

    assert dst.provenance is not None and dst.provenance.startswith("vidcolour ")
    assert "model tiny" in dst.provenance

    if keeps.colour:
        colour_range, primaries, transfer, matrix = src.colour
        expected = (colour_range or TV, primaries, transfer, SMPTE170M if matrix == 2 else matrix)
        assert dst.colour == expected
    else:
        assert any("cannot hold the colour tags" in n for n in notices), notices

    assert dst.title == src.title
    if src.subtitles:
        assert dst.subtitles == (src.subtitles if keeps.subtitles else 0)
        if not keeps.subtitles:
            assert any("subtitle stream" in n and "left out" in n for n in notices), notices
    if src.chapters:
        assert dst.chapters == (src.chapters if keeps.chapters else [])
        if not keeps.chapters:
            assert any("cannot hold chapters" in n for n in notices), notices


def test_avi_says_what_its_frame_rate_grid_and_common_start_lose(
    model: Path, tmp_path: Path
) -> None:
    """VFR off the stream's frame-rate grid, and sound starting 200 ms after the picture."""
    from vidcolour import Colouriser

    colouriser = Colouriser.load(model, "cpu", resolution=64)
    vfr = write_clip(tmp_path / "vfr.mkv", size=(64, 96), pts=VFR_MS, time_base=Fraction(1, 1000))
    report = colouriser.colourise_video(vfr, tmp_path / "vfr.avi")
    assert report.frames == len(VFR_MS)
    assert any("stores only a frame rate (25 fps): 1 of 12 frames" in n for n in report.notices)

    late = _delay_audio(write_clip(tmp_path / "a.mkv", frames=6, audio="flac"), 200, tmp_path)
    report = colouriser.colourise_video(late, tmp_path / "late.avi")
    assert any("audio stream 1 starts 200 ms after the picture" in n for n in report.notices)
    report = colouriser.colourise_video(late, tmp_path / "late.mkv")  # which keeps it
    assert not any("audio stream" in n for n in report.notices)
    assert read(tmp_path / "late.mkv").audio_start == pytest.approx(0.2, abs=EXACT_S)


def _delay_audio(clip: Path, ms: int, folder: Path) -> Path:
    out = folder / f"late_{clip.name}"
    with av.open(str(clip)) as inp, av.open(str(out), "w") as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if not packet.size:
                continue
            if packet.stream.type == "audio":  # Matroska counts in milliseconds
                packet.pts = None if packet.pts is None else packet.pts + ms
                packet.dts = None if packet.dts is None else packet.dts + ms
            packet.stream = streams[packet.stream.index]
            dst.mux(packet)
    return out


def test_provenance_goes_where_each_container_keeps_it() -> None:
    tag = "vidcolour 1.0; model tiny; sha256 ab"
    assert with_provenance({"title": "T"}, "matroska", tag) == {"title": "T", "vidcolour": tag}
    # AVI keeps no custom key: a line of its comment, after the input's own comment; the tag
    # of an earlier vidcolour run (the input may be an earlier output) is replaced.
    earlier = {"COMMENT": "scanned 1998\nvidcolour 0.9; model old", "VIDCOLOUR": "x"}
    tags = with_provenance(earlier, "avi", tag)
    assert tags == {"comment": f"scanned 1998\n{tag}"}
    assert read_provenance(tags) == tag
    assert read_provenance({"VIDCOLOUR": tag}) == tag  # as Matroska's tags read back
    assert read_provenance({"comment": "scanned 1998"}) is None


def test_avi_outputs_default_to_mpeg4_and_refuse_h264(tmp_path: Path) -> None:
    from vidcolour.run import output_name, plan_jobs

    src = write_clip(tmp_path / "reel.avi", frames=2, codec="mpeg4")
    assert output_name(src, None) == "reel.avi"  # no codec asked for: the container's default
    assert output_name(src, "h264") == "reel.mp4"
    assert output_name(tmp_path / "reel.ts", None) == "reel.mp4"
    assert [j.dst.name for j in plan_jobs([src], tmp_path / "out.avi", None)] == ["out.avi"]
    result = CliRunner().invoke(
        main, ["run", str(src), "-o", str(tmp_path / "out.avi"), "--codec", "h264", *FAST]
    )
    assert result.exit_code != 0 and "h264 cannot go into .avi" in result.output
