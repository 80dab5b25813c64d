"""What long jobs print off a terminal (issue 24, defect 1): plain progress lines in a log
file, nothing wrapped by the tool, no stray blank line, machine-readable output on stdout."""

from __future__ import annotations

import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from rich.table import Table

from tests.video_helpers import save_tiny_model
from vidcolour.progress import PlainMeter, duration, make_console, plural
from vidcolour.video.synth import write_clip


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_meter_says_each_tenth_and_at_least_every_interval() -> None:
    lines: list[str] = []
    clock = Clock()
    meter = PlainMeter(lines.append, "reel.mkv", every_s=30, clock=clock)
    meter.update(0, 100)  # the count it starts from
    for done in range(1, 101):
        clock.now = done * 0.1
        meter.update(done, 100)
    assert len(lines) == 9  # 10%, ..., 90%; the job's summary says 100%
    assert lines[0] == "reel.mkv: 10/100 frames (10%), 10.0 frames/s, 0:00:01 in, ETA 0:00:09"

    lines.clear()
    meter = PlainMeter(lines.append, "stream", every_s=30, clock=clock)  # size unknown
    start = clock.now
    meter.update(0, None)
    for done in range(1, 601):
        clock.now = start + done * 0.25
        meter.update(done, None)
    assert len(lines) == 5  # 150 s: one line each 30 s
    assert lines[0] == "stream: 120 frames, 4.0 frames/s, 0:00:30 in"


def test_a_resumed_job_s_rate_and_eta_are_its_own() -> None:
    """A film resumed from its finished segments starts at 6,000 of 10,000 frames: its rate
    and ETA come from the frames this run makes, not from those an earlier run made."""
    lines: list[str] = []
    clock = Clock()
    meter = PlainMeter(lines.append, "film.mkv", every_s=30, clock=clock)
    meter.update(6000, 10000)
    assert lines == []  # the count it starts from is no progress
    for done in range(6001, 7001):
        clock.now += 0.1  # 10 frames/s
        meter.update(done, 10000)
    assert lines[-1] == "film.mkv: 7000/10000 frames (70%), 10.0 frames/s, 0:01:40 in, ETA 0:05:00"


def test_words() -> None:
    assert [plural(n, "shot") for n in (0, 1, 2)] == ["0 shots", "1 shot", "2 shots"]
    assert duration(221.4) == "0:03:41" and duration(-1) == "0:00:00"


def test_console_off_a_terminal_wraps_nothing() -> None:
    out = StringIO()
    console = make_console(file=out)
    assert not console.is_terminal
    long_line = " ".join(f"word{i}" for i in range(60))  # ~400 characters
    console.print(long_line)
    table = Table(title="t")
    for i in range(12):
        table.add_column(f"a long column header {i}")
    table.add_row(*(f"/a/long/path/to/file_{i}.mkv" for i in range(12)))
    console.print(table)
    lines = out.getvalue().splitlines()
    assert lines[0] == long_line
    assert any("a long column header 11" in line for line in lines)
    assert any("/a/long/path/to/file_11.mkv" in line for line in lines)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def test_run_logs_progress_lines_to_a_file(model: Path, tmp_path: Path) -> None:
    """`run ... 2> log`, as under nohup or Slurm: plain lines with count, rate and ETA as it
    goes, then the summary; no blank line, no bar's control codes."""
    src = write_clip(tmp_path / "reel.mkv", frames=40, size=(64, 96), codec="ffv1")
    log = tmp_path / "log.txt"
    command = [sys.executable, "-m", "vidcolour", "run", str(src), "-o", str(tmp_path / "o.mkv"),
               "--model", str(model), "--resolution", "32", "--batch-size", "2",
               "--device", "cpu", "--codec", "ffv1"]  # fmt: skip
    with log.open("w") as err:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=err, timeout=300)
    assert done.returncode == 0
    lines = log.read_text().splitlines()
    progress = [line for line in lines if line.startswith("reel.mkv: ")]
    assert len(progress) >= 5, lines
    assert "/40 frames (" in progress[0] and "frames/s" in progress[0] and "ETA" in progress[0]
    assert lines[-1].startswith(f"{tmp_path / 'o.mkv'}: 40 frames")
    assert all(line.strip() for line in lines)
    assert "\x1b" not in log.read_text()
