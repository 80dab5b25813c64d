"""Project-level checks: the README's commands, CI, lint and the examples stay in step."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def quick_start() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start.*?```(?:bash|sh)?\n(.*?)```", readme, re.S)
    assert block, "README has no quick start code block"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    commands = quick_start()
    assert len(commands) == 2
    assert "torch==2.13.0" in commands[0] and "torch==2.13.0" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == commands[1]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_ruff_is_clean() -> None:
    out = subprocess.run(["ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_mypy_is_clean() -> None:
    pytest.importorskip("mypy")
    out = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_examples_run(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "build_and_save.py"), str(tmp_path / "g.st")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "folded: sn" in out.stdout


def test_example_clip_is_reproducible(tmp_path) -> None:
    """examples/bikes_grey.mp4 is what examples/make_clip.py makes from the shared sample."""
    from .video_helpers import frames, luma

    source = ROOT.parent / "shared" / "data" / "video" / "bikes.mp4"
    if not source.is_file():
        pytest.skip("needs ../shared/data")
    made = tmp_path / "clip.mp4"
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "make_clip.py"), str(source), str(made)],
        check=True,
        capture_output=True,
    )
    shipped = frames(ROOT / "examples" / "bikes_grey.mp4")
    ours = frames(made)
    assert len(ours) == len(shipped) == 100
    assert all((luma(a) == luma(b)).all() for a, b in zip(ours, shipped, strict=True))
