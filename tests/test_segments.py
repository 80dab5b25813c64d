"""Long films in segments (vidcolour/video/segments.py): a kill costs one segment, not the film.

The kill tests run the real CLI in a child process and kill it with SIGKILL at chosen moments.
The child counts every frame the model colourises in a file of its own, appended after each
batch, so what each run cost survives its kill."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from tests.helpers import ledger_rows as rows
from tests.video_helpers import TINY, save_tiny_model
from vidcolour.batch.ledger import LEDGER_NAME, Ledger
from vidcolour.cli import main
from vidcolour.colouriser import Colouriser
from vidcolour.errors import VidcolourError
from vidcolour.nets import build_generator
from vidcolour.video import pipeline, segments
from vidcolour.video.pipeline import VideoOptions, colourise_video
from vidcolour.video.segments import (
    KEY_PARTS,
    MANIFEST,
    WorkFolder,
    key_change,
    segment_chunks,
    work_path,
)
from vidcolour.video.shots import ShotDetector
from vidcolour.video.source import Source
from vidcolour.video.synth import write_film
from vidcolour.weights import save_generator

RATE = 25
SHOTS = [400, 150, 1200, 300, 250, 700]  # 3,000 frames; the third shot is longer than a cap
SEGMENT_S = 8.0  # 200 frames: target; a shot is split at 400 (segments.CAP_FACTOR)
SMALL = ("--resolution", "64", "--segment-seconds", str(SEGMENT_S))
FAST = (*SMALL, "--preset", "ultrafast")
# Frames a killed run may have colourised past what its last finished segment holds, besides
# the segment in hand: the model's batch and the two queues of chunks (pipeline.queue_chunks)
# before the encoder, plus the shot detector's look-ahead of three frames.
SLACK = 8 * 3 + 3

_DRIVER = """
import os, sys, time
from vidcolour.colouriser import Colouriser
from vidcolour.video.sink import Sink

count = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
predict = Colouriser.predict_ab

def counted(self, L, size=None):
    ab = predict(self, L, size)
    os.write(count, b"%d\\n" % L.shape[0])  # one write: whole lines survive a SIGKILL
    return ab

Colouriser.predict_ab = counted
if os.environ.get("SLOW_JOIN"):  # a join long enough to be killed in
    copy = Sink.copy
    def slow(self, packet):
        time.sleep(float(os.environ["SLOW_JOIN"]))
        copy(self, packet)
    Sink.copy = slow
from vidcolour.entry import main
sys.argv = ["vidcolour", *sys.argv[2:]]
main()
"""


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def film(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 frames at 25 fps with five cuts, a 48 s shot and AAC sound."""
    path = tmp_path_factory.mktemp("film") / "film.mp4"
    write_film(path, SHOTS, rate=RATE)
    return path


class Child:
    """A vidcolour command in a child process that counts the frames it colourises."""

    def __init__(self, tmp: Path, *args: str | Path, slow_join: float | None = None) -> None:
        driver = tmp / "driver.py"
        driver.write_text(textwrap.dedent(_DRIVER))
        self.counts = tmp / f"count-{time.monotonic_ns()}.txt"
        env = {"SLOW_JOIN": str(slow_join)} if slow_join else {}

        self.process = subprocess.Popen(
            [sys.executable, str(driver), str(self.counts), *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env},
        )

    def wait_for(self, condition: Callable[[], bool], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process.poll() is None, self.process.communicate()[0]
            assert time.monotonic() < deadline, "the moment to kill never came"
            time.sleep(0.002)

    def kill(self) -> int:
        self.process.send_signal(signal.SIGKILL)
        self.output = self.process.communicate(timeout=60)[0]
        return self.frames()

    def finish(self) -> tuple[int, str]:
        output = self.process.communicate(timeout=600)[0]
        assert self.process.returncode == 0, output
        return self.frames(), output

    def frames(self) -> int:
        text = self.counts.read_text() if self.counts.exists() else ""
        return sum(int(line) for line in text.split())


def manifest(dst: Path) -> dict:
    try:
        return json.loads((work_path(dst) / MANIFEST).read_text())
    except (OSError, ValueError):
        return {"segments": [], "complete": False}


def parts(dst: Path) -> list[Path]:
    folder = work_path(dst)
    return list(folder.glob("*.part")) if folder.is_dir() else []


def picture(path: Path) -> tuple[list[int], list[bytes], list[bytes]]:
    """Every frame's timestamp, luma plane and chroma planes, decoded."""
    pts, lumas, chromas = [], [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            pts.append(frame.pts)
            planes = [np.asarray(p).tobytes() for p in frame.planes]
            lumas.append(planes[0])
            chromas.append(b"".join(planes[1:]))
    return pts, lumas, chromas


def sound(path: Path) -> list[tuple[int | None, bytes]]:
    with av.open(str(path)) as container:
        return [(p.pts, bytes(p)) for p in container.demux(container.streams.audio[0]) if p.size]


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def finished(dst: Path) -> int:
    """Frames the recorded segments of ``dst`` hold."""
    return sum(segment["frames"] for segment in manifest(dst)["segments"])


def killed(child: Child, out: Path, before: int) -> int:
    """Kill ``child``; what it cost: frames it colourised that no recorded segment holds."""
    colourised = child.kill()
    return colourised - (finished(out) - before)


# ------------------------------------------------------------------------------- kill -9
def three_kills(
    tmp: Path, args: tuple[str | Path, ...], out: Path, after_first: Callable[[], None]
) -> tuple[list[int], list[dict]]:
    """Run ``args`` and kill it with SIGKILL mid-segment (two recorded; then
    ``after_first()``), again just after the next segment is recorded, and again during the
    join (slowed down so that the kill lands in it); then run it to the end, which must only
    join. Returns what each kill cost (``killed``) and the segments made."""
    costs = []
    child = Child(tmp, *args)
    child.wait_for(lambda: len(manifest(out)["segments"]) >= 2 and bool(parts(out)))
    costs.append(killed(child, out, 0))
    after_first()

    before, recorded = finished(out), len(manifest(out)["segments"])
    child = Child(tmp, *args)
    child.wait_for(lambda: len(manifest(out)["segments"]) > recorded)
    costs.append(killed(child, out, before))

    before = finished(out)
    child = Child(tmp, *args, slow_join=0.002)
    child.wait_for(
        lambda: manifest(out)["complete"] and bool(list(out.parent.glob(f".{out.name}.*.tmp")))
    )
    time.sleep(0.5)
    costs.append(killed(child, out, before))
    assert manifest(out)["complete"] and not out.exists()
    made = manifest(out)["segments"]

    last, _ = Child(tmp, *args).finish()
    assert last == 0, "every segment was finished: the last run only joins them"
    longest = max(s["frames"] for s in made)
    print(f"frames lost to each kill: {costs}; longest segment {longest}, {len(made)} segments")
    assert all(0 <= cost <= longest + SLACK for cost in costs), (costs, longest)
    assert costs[2] == 0  # a kill during the join loses no colourised frame
    assert leftovers(out.parent) == [] and not list(out.parent.rglob("*.tmp"))
    return costs, made


def test_batch_survives_kill_9_at_three_moments(model: Path, film: Path, tmp_path: Path) -> None:
    """Killed mid-segment, just after a segment was recorded and during the final join, then
    run again each time: the output equals an uninterrupted batch's (H.264: frame count,
    timestamps, luma; the sound's packets), and each kill cost at most one segment."""
    src, ref, dst = tmp_path / "src", tmp_path / "ref", tmp_path / "dst"
    src.mkdir()
    (src / "film.mp4").write_bytes(film.read_bytes())
    whole, _ = Child(tmp_path, "batch", src, "-o", ref, "--model", model, *FAST).finish()
    assert whole == sum(SHOTS)
    out = dst / "film.mp4"

    def progress_in_segments() -> None:
        row = rows(dst)["film.mp4"]
        assert row["status"] == "running"  # as a power cut leaves it
        assert row["segments"] == len(manifest(out)["segments"])
        report = CliRunner().invoke(main, ["report", str(dst)]).output
        assert f"{row['segments']} segments finished, kept for the next run" in report, report

    args = ("batch", src, "-o", dst, "--model", model, *FAST)
    _, made = three_kills(tmp_path, args, out, progress_in_segments)
    ref_pts, ref_luma, _ = picture(ref / "film.mp4")
    pts, luma, _ = picture(out)
    assert len(pts) == sum(SHOTS) and pts == ref_pts
    assert luma == ref_luma
    assert sound(out) == sound(ref / "film.mp4")
    row = rows(dst)["film.mp4"]
    assert row["status"] == "done" and row["frames"] == sum(SHOTS)
    assert row["segments"] == len(made) > sum(SHOTS) // 400


def test_run_resume_after_kill_9(model: Path, film: Path, tmp_path: Path) -> None:
    """`run --resume` after SIGKILLs at the same three moments: with FFV1 every decoded frame
    equals an uninterrupted run's, and the sound's packets too; `run` without --resume refuses
    to throw the segments away."""
    ref, out = tmp_path / "ref.mkv", tmp_path / "out.mkv"
    common = ("--model", model, "--codec", "ffv1", *SMALL)
    Child(tmp_path, "run", film, "-o", ref, *common).finish()

    def refused_without_resume() -> None:
        result = CliRunner().invoke(main, ["run", str(film), "-o", str(out), *map(str, common)])
        assert result.exit_code == 1 and "add --resume to go on from them" in result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1

    args = ("run", film, "-o", out, *common, "--resume")
    _, made = three_kills(tmp_path, args, out, refused_without_resume)
    assert picture(out) == picture(ref)
    assert sound(out) == sound(ref)

    # The boundaries do not show: the film made in one piece has the same frames, and colour
    # within a code of it (the model batches other frames together after a boundary).
    assert any(s["first"] not in np.cumsum([0, *SHOTS]) for s in made)  # a shot was split
    whole = tmp_path / "whole.mkv"
    Child(tmp_path, "run", film, "-o", whole, *common, "--segment-seconds", "0").finish()
    pts, luma, chroma = picture(out)
    assert picture(whole)[:2] == (pts, luma)
    diff = max(
        int(np.abs(np.frombuffer(a, np.uint8).astype(int) - np.frombuffer(b, np.uint8)).max())
        for a, b in zip(chroma, picture(whole)[2], strict=True)
    )
    print(f"chroma against the film in one piece: max difference {diff} codes")
    assert diff <= 1


class Stop(Exception):
    pass


def _interrupted(colouriser: Colouriser, src: Path, dst: Path, at: int, **options: object) -> None:
    """Colourise ``src`` in segments of 40 frames and stop once ``at`` frames are written."""

    def progress(done: int, expected: int | None) -> None:
        if done >= at:
            raise Stop

    with pytest.raises(Stop):
        colourise_video(
            colouriser, src, dst, VideoOptions("ffv1", segment_seconds=1.6, **options), progress
        )  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def short_film(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("short") / "short.mp4"
    write_film(path, [60, 130, 50])
    return path


def _resume(colouriser: Colouriser, src: Path, dst: Path) -> tuple[int, list[str]]:
    """Resume; the frames it colourised and its notices."""
    notices: list[str] = []
    report = colourise_video(
        colouriser,
        src,
        dst,
        VideoOptions("ffv1", segment_seconds=1.6, resume=True),
        notify=notices.append,
    )
    return report.frames - report.resumed_frames, notices


def test_a_changed_input_or_model_discards_the_segments(
    model: Path, short_film: Path, tmp_path: Path
) -> None:
    colouriser = Colouriser.load(model, "cpu", resolution=64)
    dst = tmp_path / "out.mkv"
    _interrupted(colouriser, short_film, dst, 150)
    assert len(manifest(dst)["segments"]) >= 2
    torch.manual_seed(1)
    other = tmp_path / "other.safetensors"
    save_generator(other, build_generator(TINY), name="tiny")
    colourised, notices = _resume(Colouriser.load(other, "cpu", resolution=64), short_film, dst)
    assert colourised == 240 and any("the model changed since its" in n for n in notices)

    dst.unlink()
    copy = tmp_path / "film.mp4"
    copy.write_bytes(short_film.read_bytes())
    _interrupted(colouriser, copy, dst, 150)
    with copy.open("r+b") as f:  # the same size, other bytes: a re-transferred file
        f.seek(copy.stat().st_size - 10)
        f.write(b"0123456789")
    colourised, notices = _resume(colouriser, copy, dst)
    assert colourised == 240 and any("the input changed since its" in n for n in notices)


def test_a_preview_over_an_interrupted_film_leaves_nothing_stale(
    model: Path, short_film: Path, tmp_path: Path
) -> None:
    """A film stopped part-way, then a preview (in one piece) to the same output: refused
    while the earlier segments are there; with --overwrite they go, with a notice."""
    colouriser = Colouriser.load(model, "cpu", resolution=64)
    dst = tmp_path / "out.mkv"
    _interrupted(colouriser, short_film, dst, 150)
    work = work_path(dst)
    assert work.is_dir()
    preview = VideoOptions("ffv1", duration=1.0)
    for resume in (False, True):  # --resume cannot use them in one piece: they are kept
        with pytest.raises(VidcolourError, match="add --overwrite to discard them"):
            colourise_video(
                colouriser, short_film, dst, dataclasses.replace(preview, resume=resume)
            )
    assert work.is_dir() and not dst.exists()
    notices: list[str] = []
    again = dataclasses.replace(preview, overwrite=True)
    colourise_video(colouriser, short_film, dst, again, notify=notices.append)
    assert dst.is_file() and not work.exists()
    assert leftovers(tmp_path) == [] and any("segments discarded" in n for n in notices)


def test_run_stopped_between_the_rename_and_the_work_folders_removal(
    model: Path, short_film: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run` stopped after its output was renamed into place but before its work folder was
    removed (a SIGTERM landing there, as here, or a SIGKILL): the message says the output was
    written, and `run --resume` takes it as finished and removes the work folder, where before
    it said the output was not written and then refused it ("exists"), the folder left for
    good. Found by a random kill soak's look at the moments between steps."""
    out = tmp_path / "out.mkv"
    args = ["run", str(short_film), "-o", str(out), "--model", str(model), "--codec", "ffv1",
            "--resolution", "64", "--segment-seconds", "1.6", "--resume"]  # fmt: skip
    remove = WorkFolder.remove

    def stopped(self: WorkFolder) -> None:
        (self.path / "00000.mkv").unlink()  # part-way through
        raise KeyboardInterrupt  # what the SIGTERM handler of `run` raises

    monkeypatch.setattr(WorkFolder, "remove", stopped)
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 130, first.output
    assert f"{out} was written" in first.output and "not written" not in first.output
    made = out.read_bytes()
    assert work_path(out).is_dir()
    monkeypatch.setattr(WorkFolder, "remove", remove)
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "already written" in again.output
    assert out.read_bytes() == made and leftovers(tmp_path) == []
    refused = CliRunner().invoke(main, args)  # nothing of a run left: an output is not replaced
    assert refused.exit_code == 1 and "exists" in refused.output


def test_segments_of_another_output_revision_are_made_again(
    model: Path, short_film: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version of vidcolour that computes other frames (pipeline.OUTPUT_REVISION) does not
    join its segments to an earlier version's, and says that this is why it starts again."""
    colouriser = Colouriser.load(model, "cpu", resolution=64)
    dst = tmp_path / "out.mkv"
    _interrupted(colouriser, short_film, dst, 150)
    assert len(manifest(dst)["segments"]) >= 2
    monkeypatch.setattr(pipeline, "OUTPUT_REVISION", pipeline.OUTPUT_REVISION + 1)
    colourised, notices = _resume(colouriser, short_film, dst)
    assert colourised == 240
    revisions = f"{pipeline.OUTPUT_REVISION - 1} -> {pipeline.OUTPUT_REVISION}"
    said = f"what this vidcolour version computes (output revision {revisions}) changed since its"
    assert any(said in n for n in notices)
    assert not any("the model" in n or "the input" in n for n in notices)


def test_a_changed_work_key_is_told_part_by_part(tmp_path: Path) -> None:
    """What the rerun says when it starts a film again: which parts of the key changed, and a
    hedged whole when the old key cannot be read part by part."""
    film = tmp_path / "film.mp4"
    film.write_bytes(b"0" * 100)
    colouriser = SimpleNamespace(identity={"sha256": "a"})
    key = json.loads(pipeline._work_key(colouriser, film, VideoOptions("ffv1")))
    assert set(key) == set(KEY_PARTS)  # every part has its words

    def change(**parts: object) -> str:
        return key_change(json.dumps(key), json.dumps({**key, **parts}))

    assert change(model={"sha256": "b"}) == "the model"
    assert change(input={}, options={}) == "the input and the settings"
    assert change(revision=99) == (
        f"what this vidcolour version computes (output revision {key['revision']} -> 99)"
    )
    before_revisions = json.dumps({k: v for k, v in key.items() if k != "revision"})
    assert key_change(before_revisions, json.dumps(key)) == (
        f"what this vidcolour version computes (output revision none -> {key['revision']})"
    )
    hedged = "the input, model, settings or vidcolour version"
    assert key_change("not json", json.dumps(key)) == hedged
    assert key_change(None, json.dumps(key)) == hedged


def test_a_stop_during_the_join_is_heard(
    model: Path, short_film: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch stops through ``progress``; the join of a film's segments copies gigabytes, so
    it must ask too, all through (Slurm kills two minutes after its SIGTERM)."""
    monkeypatch.setattr(segments, "CHECK_PACKETS", 8)  # the film's 240 packets: 30 asks
    colouriser = Colouriser.load(model, "cpu", resolution=64)
    dst = tmp_path / "out.mkv"
    joining, asked = False, 0

    def segment(count: int, frames: int) -> None:
        nonlocal joining
        joining = frames == 240

    def progress(done: int, expected: int | None) -> None:
        nonlocal asked
        asked += joining
        if asked == 20:  # well into the join, not only at its start
            raise Stop

    with pytest.raises(Stop):
        colourise_video(
            colouriser,
            short_film,
            dst,
            VideoOptions("ffv1", segment_seconds=1.6),
            progress,
            on_segment=segment,
        )
    assert manifest(dst)["complete"] and not dst.exists()
    assert leftovers(tmp_path) == [f".{dst.name}.vidcolour-work"]
    assert _resume(colouriser, short_film, dst)[0] == 0  # only the join was left


def test_a_damaged_segment_is_made_again(model: Path, short_film: Path, tmp_path: Path) -> None:
    colouriser = Colouriser.load(model, "cpu", resolution=64)
    ref, dst = tmp_path / "ref.mkv", tmp_path / "out.mkv"
    colourise_video(colouriser, short_film, ref, VideoOptions("ffv1", segment_seconds=1.6))
    _interrupted(colouriser, short_film, dst, 200)
    segments = manifest(dst)["segments"]
    assert len(segments) >= 3
    damaged = work_path(dst) / segments[1]["file"]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    colourised, notices = _resume(colouriser, short_film, dst)
    assert any("content differs from the record" in n for n in notices), notices
    assert colourised == 240 - segments[0]["frames"]
    assert picture(dst) == picture(ref)


def test_segments_start_at_cuts_after_the_target_and_split_long_shots(short_film: Path) -> None:
    """Shots of 60, 130 and 50 frames, target 1.6 s (40 frames), cap 3.2 s: segments at the
    cut at 60, at 140 (the long shot's cap, its state carried across) and at the cut at 190,
    batched afresh."""

    def starts(cap: float | None) -> tuple[list[int], list[int]]:
        first, sizes, index = [], [], 0
        with Source(short_film) as source:
            chunks = source.chunks(8)
            for chunk in segment_chunks(chunks, 8, 8, 1.6, cap, ShotDetector(), 25.0):
                if chunk.segment_state is not None:
                    first.append(index)
                sizes.append(len(chunk.frames))
                index += len(chunk.frames)
        return first, sizes

    first, sizes = starts(3.2)
    assert first == [0, 60, 140, 190]
    assert max(sizes) == 8 and sizes[:8] == [8] * 7 + [4]  # 60 = 7 x 8 + 4, then afresh
    assert starts(None)[0] == [0, 60, 190]  # with keyframes: at cuts only


def test_resume_with_keyframes_equals_one_run(
    model: Path, short_film: Path, tmp_path: Path
) -> None:
    colouriser = Colouriser.load(model, "cpu", resolution=64)
    with Source(short_film) as source:
        first = next(f for f in source.frames() if isinstance(f, av.VideoFrame))
        grey = first.to_ndarray(format="rgb24")
    painted = tmp_path / "kf"
    painted.mkdir()
    tinted = grey.copy()
    tinted[..., 0] = np.clip(tinted[..., 0].astype(int) + 60, 0, 255)
    Image.fromarray(tinted).save(painted / "000070.png")
    keyframes = {70: painted / "000070.png"}
    ref, dst = tmp_path / "ref.mkv", tmp_path / "out.mkv"
    options = VideoOptions("ffv1", segment_seconds=1.6, keyframes=keyframes, model_workers=1)
    colourise_video(colouriser, short_film, ref, options)
    _interrupted(colouriser, short_film, dst, 150, keyframes=keyframes)
    resumed = VideoOptions(
        "ffv1", segment_seconds=1.6, keyframes=keyframes, resume=True, model_workers=2
    )  # the worker count is not part of the segments' key: the same colour
    report = colourise_video(colouriser, short_film, dst, resumed)
    assert report.resumed_frames > 0
    assert picture(dst) == picture(ref)


def test_a_ledger_from_before_segments_is_migrated(tmp_path: Path) -> None:
    """An archive's schema-1 ledger gains the segments column; its rows are kept."""
    from vidcolour.batch import ledger

    old = ledger._SCHEMA.replace(",\n    segments INTEGER", "")
    assert old != ledger._SCHEMA
    db = sqlite3.connect(tmp_path / LEDGER_NAME)
    db.executescript(old)
    db.execute("INSERT INTO meta VALUES ('schema', '1')")
    db.execute("INSERT INTO files (rel, status, frames) VALUES ('reel.mkv', 'done', 250)")
    db.commit()
    db.close()
    opened = Ledger(tmp_path)
    row = opened.get("reel.mkv")
    assert row is not None and (row.status, row.frames, row.segments) == ("done", 250, None)
    assert opened.meta()["schema"] == "2"
