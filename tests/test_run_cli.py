"""`vidcolour run` from the command line: stills, and every error case of issue 5 item 9.

Each failure must be one line on stderr, a non-zero exit, no traceback, nothing at OUTPUT and
no temp file left beside it.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from tests.video_helpers import frames, save_tiny_model
from vidcolour.cli import main
from vidcolour.video.synth import grey_picture, write_clip

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mkv", frames=6, audio="flac")


def run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", *map(str, args), "--resolution", "64"])
    return result.exit_code, result.output


def assert_clean_failure(code: int, output: str, out: Path, message: str) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    assert code != 0
    assert "Traceback" not in output
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], output
    assert not out.exists() or out.is_dir()
    if out.parent.is_dir():
        leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
        assert leftovers == []


def test_run_video_then_refuse_to_overwrite(model: Path, clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    code, output = run(clip, "-o", out, "--model", model)
    assert code == 0, output
    assert "6 frames" in output
    before = out.read_bytes()
    code, output = run(clip, "-o", out, "--model", model)
    assert code == 1 and "exists (use --overwrite" in output
    assert out.read_bytes() == before
    code, output = run(clip, "-o", out, "--model", model, "--overwrite", "--codec", "h265")
    assert code == 0, output


@pytest.mark.skipif(shutil.which(os.environ.get("CXX") or "g++") is None, reason="no C++ compiler")
def test_run_compiled_is_the_colour_of_eager(model: Path, clip: Path, tmp_path: Path) -> None:
    outs = {}
    for flags in ((), ("--compile",)):
        outs[flags] = tmp_path / f"out{len(flags)}.mkv"
        code, output = run(clip, "-o", outs[flags], "--model", model, "--codec", "ffv1", *flags)
        assert code == 0, output
        assert ("notice: --compile" in output) == bool(flags)
    eager, compiled = (frames(path) for path in outs.values())
    assert len(eager) == len(compiled) == 6
    for a, b in zip(eager, compiled, strict=True):
        difference = np.abs(a.to_ndarray().astype(int) - b.to_ndarray().astype(int))
        assert difference.max() <= 1  # luma exact, chroma codes within one


def test_run_still_images(model: Path, tmp_path: Path) -> None:
    grey = grey_picture(0, 61, 83)
    src = tmp_path / "still.png"
    Image.fromarray(grey).save(src)
    out = tmp_path / "still_colour.jpg"
    code, output = run(src, "-o", out, "--model", model)
    assert code == 0, output
    with Image.open(out) as image:
        assert image.size == (83, 61) and image.mode == "RGB"
    coloured = tmp_path / "colour.png"
    hues = [grey_picture(seed, 61, 83) for seed in (1, 2)]  # colour, not one tint of grey
    Image.fromarray(np.stack([grey, *hues], axis=2)).save(coloured)
    code, output = run(coloured, "-o", tmp_path / "again.png", "--model", model)
    assert code == 0 and "already has colour" in output


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: _write(d / "empty.mp4", b""), "is empty"),
        (lambda d: _write(d / "notes.mp4", b"just some text\n" * 50), "not a video"),
        (lambda d: _truncated(d), "not a video"),
        (lambda d: _audio_only(d / "sound.mka"), "has no video stream"),
        (lambda d: _write(d / "header.mkv", _clip_bytes(d)[:600]), "no video frame"),
    ],
    ids=["missing", "directory", "empty", "text", "truncated", "no-video", "no-frames"],
)
def test_bad_input(model: Path, tmp_path: Path, make: object, message: str) -> None:
    src = make(tmp_path)  # type: ignore[operator]
    out = tmp_path / "out" / "colour.mp4"
    out.parent.mkdir()
    code, output = run(src, "-o", out, "--model", model)
    assert_clean_failure(code, output, out, message)


def test_a_missing_input_stops_the_queue_before_any_work(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "coloured"
    code, output = run(clip, tmp_path / "typo.mp4", "-o", f"{out}/", "--model", "no-such-model")
    assert code == 1 and "typo.mp4: no such file" in output and "Traceback" not in output
    assert not out.exists()  # nothing written, nothing created; the model was never loaded


def test_a_refusal_leaves_no_output_folder(clip: Path, tmp_path: Path) -> None:
    """The output folder (-o ending in /) is made when the work starts, not before a refusal."""
    out = tmp_path / "coloured"
    code, output = run(clip, "-o", f"{out}/", "--model", tmp_path / "missing.safetensors")
    assert code == 1 and "model file not found" in output
    other = shutil.copy(clip, tmp_path / "other.mkv")
    code, output = run(clip, other, "-o", f"{out}/", "--keyframes", tmp_path)
    assert code == 2 and "--keyframes colours one video" in output
    assert not out.exists()


def test_a_stretch_between_the_last_frame_and_the_end(clip: Path, tmp_path: Path) -> None:
    """A start after the last frame's time but before the film's end: said as such, not as a
    film that cannot be decoded."""
    out = tmp_path / "preview.mkv"
    code, output = run(
        clip, "-o", out, "--start", "0.21", "--model", save_tiny_model(tmp_path / "m.safetensors")
    )
    assert_clean_failure(code, output, out, "no frame lies in the stretch")


def test_the_video_commands_given_a_still(tmp_path: Path) -> None:
    still = tmp_path / "frame.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(still)
    result = CliRunner().invoke(main, ["shots", str(still)])
    assert result.exit_code == 1 and "not a video: this works on videos" in result.output


def test_bad_model(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "colour.mp4"
    code, output = run(clip, "-o", out, "--model", tmp_path / "missing.safetensors")
    assert_clean_failure(code, output, out, "model file not found")
    junk = _write(tmp_path / "junk.safetensors", os.urandom(4096))
    code, output = run(clip, "-o", out, "--model", junk)
    assert_clean_failure(code, output, out, "junk.safetensors")


def test_bad_output(model: Path, clip: Path, tmp_path: Path) -> None:
    code, output = run(clip, "-o", clip, "--model", model, "--overwrite")
    assert code == 1 and "is the input" in output and "Traceback" not in output
    out = tmp_path / "nowhere" / "colour.mp4"
    code, output = run(clip, "-o", out, "--model", model)
    assert_clean_failure(code, output, out, "does not exist")
    out = tmp_path / "colour.xyz"
    code, output = run(clip, "-o", out, "--model", model)
    assert_clean_failure(code, output, out, "unknown output type")
    out = tmp_path / "colour.mp4"
    code, output = run(clip, "-o", out, "--model", model, "--codec", "ffv1")
    assert_clean_failure(code, output, out, "ffv1 cannot go into .mp4")


def test_a_size_the_codec_cannot_code(model: Path, tmp_path: Path) -> None:
    """FFV1 refuses pictures 1 pixel wide when its encoder opens: say that, not FFmpeg's
    "Function not implemented"."""
    strip = write_clip(tmp_path / "strip.avi", frames=3, size=(40, 1), codec="rawvideo",
                       pix_fmt="yuv444p")  # fmt: skip
    out = tmp_path / "colour.mkv"
    code, output = run(strip, "-o", out, "--model", model, "--codec", "ffv1")
    assert_clean_failure(code, output, out, "encoder cannot code pictures of this size")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_directory(model: Path, clip: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    out = locked / "colour.mp4"
    code, output = run(clip, "-o", out, "--model", model)
    assert_clean_failure(code, output, out, "not writable")


def test_directory_refusing_writes(
    model: Path, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a read-only mount or an ACL does, even to root: creating the temp file fails."""
    import tempfile

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    out = tmp_path / "colour.mp4"
    code, output = run(clip, "-o", out, "--model", model)
    assert_clean_failure(code, output, out, "cannot write")
    assert "Permission denied" in output


def _cli(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "vidcolour", "run", *map(str, args), "--resolution", "64"]


def test_full_disk(model: Path, tmp_path: Path) -> None:
    """The file-size limit makes writes fail the way a full disk does, part way through."""
    src = write_clip(tmp_path / "long.mkv", frames=60, size=(240, 320), codec="ffv1")
    out = tmp_path / "colour.mkv"

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    command = _cli(src, "-o", out, "--model", model, "--codec", "ffv1")
    done = subprocess.run(command, capture_output=True, text=True, preexec_fn=limit, timeout=300)
    assert_clean_failure(done.returncode, done.stderr, out, "cannot write")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted(model: Path, tmp_path: Path, sig: signal.Signals) -> None:
    """Ctrl-C, and SIGTERM as Slurm or ``kill`` send it: nothing at the output, no temp file."""
    src = write_clip(tmp_path / "long.mkv", frames=1200, size=(240, 320), codec="ffv1")
    out = tmp_path / "colour.mkv"
    command = _cli(src, "-o", out, "--model", model, "--batch-size", "2")
    # A shell's background job (nohup ... &) inherits SIGINT ignored, and Python then never
    # raises KeyboardInterrupt: give the child the default disposition, as a terminal would.
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".colour.mkv.") for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)  # into the job, seconds before its end
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert_clean_failure(1, stderr, out, "interrupted")


# ------------------------------------------------------------------------------ inputs
def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _clip_bytes(directory: Path) -> bytes:
    return write_clip(directory / "whole.mkv", frames=6).read_bytes()


def _truncated(directory: Path) -> Path:
    """An MP4 cut short: its index (moov) comes last and is lost."""
    whole = write_clip(directory / "whole.mp4", frames=12)
    data = whole.read_bytes()
    return _write(directory / "cut.mp4", data[: len(data) // 2])


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("flac", rate=48000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 4800), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts = 48000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


def test_bench_reports_every_stage(model: Path, clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        main,
        ["bench", "--input", str(clip), "--model", str(model), "--resolution", "64",
         "--batch-size", "2", "--json", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert figures["schema"] == "vidcolour.bench/1" and figures["frames"] == 6
    for key in ("decode_fps", "model_fps", "colour_stage_fps", "encode_fps", "end_to_end_fps"):
        assert figures[key] > 0
    slowest = min(figures[k] for k in ("decode_fps", "colour_stage_fps", "encode_fps"))
    assert figures["pipeline_efficiency"] == pytest.approx(figures["end_to_end_fps"] / slowest)
    assert 0 < figures["model_flops_utilisation"] < 2
    assert figures["end_to_end_over_model"] == pytest.approx(
        figures["end_to_end_fps"] / figures["model_fps"]
    )
    shares = figures["stage_shares"]
    assert list(shares) == ["decode", "predict", "stabilise", "chroma", "encode"]
    workers = figures["model_workers"]  # auto: two on a CPU with two threads or more
    assert workers == (2 if torch.get_num_threads() >= 2 else 1)
    # each thread's busy share; predict's summed over the model workers
    assert all(0 < share < (workers if k == "predict" else 1) for k, share in shares.items())
    # the keys docs/BENCHMARKS.md documents, and no others: `bench --json` is read by scripts
    documented = (ROOT / "docs" / "BENCHMARKS.md").read_text().split("bench --json keys:")[1]
    assert set(figures) == set(re.findall(r"`(\w+)`", documented.split("\n\n")[1]))
    assert (figures["crf"], figures["preset"], figures["tune"]) == (18, "veryfast", "grain")

    # run's encoder settings reach both encodes: a higher crf writes a smaller file
    cheap = tmp_path / "cheap.json"
    result = CliRunner().invoke(
        main,
        ["bench", "--input", str(clip), "--model", str(model), "--resolution", "64",
         "--batch-size", "2", "--crf", "40", "--preset", "ultrafast", "--tune", "none",
         "--model-workers", "1", "--json", str(cheap)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "encode (h264, crf 40, preset ultrafast)" in result.output
    settings = json.loads(cheap.read_text())
    assert (settings["crf"], settings["preset"], settings["tune"]) == (40, "ultrafast", None)
    assert settings["model_workers"] == 1
    assert 0 < settings["video_bytes_per_frame"] < figures["video_bytes_per_frame"]


def test_bench_refuses_encoder_settings_its_codec_lacks(clip: Path) -> None:
    result = CliRunner().invoke(main, ["bench", "--input", str(clip), "--preset", "fastest"])
    assert result.exit_code == 2, result.exception  # a usage error's one line, not a crash
    assert "unknown --preset 'fastest'" in result.output
    result = CliRunner().invoke(main, ["bench", "--codec", "ffv1", "--crf", "10"])
    assert result.exit_code == 2 and "apply to h264 and h265, not ffv1" in result.output


def test_names_near_the_file_name_limit(model: Path, clip: Path, tmp_path: Path) -> None:
    # 80 Japanese characters are 240 bytes: the output's own name fits in 255, and so must the
    # temp file and work folder beside it, which add up to 16 bytes
    title = "白黒映画" * 20 + ".mkv"
    out = tmp_path / title
    code, output = run(clip, "-o", out, "--model", model)
    assert code == 0, output
    assert out.is_file() and sorted(p.name for p in tmp_path.iterdir()) == [title]
