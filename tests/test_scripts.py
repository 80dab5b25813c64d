"""The benchmark and experiment scripts that docs/BENCHMARKS.md and the model card quote still
run against the package: each of the quick ones once, at toy sizes. Two had gone stale when
the API they called moved (colour_stage.py, chroma_gain.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import write_photos

ROOT = Path(__file__).resolve().parent.parent


def run_script(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("benchmarks/colour_stage.py", "--size", "64x96", "--batch", "2", "--rounds", "1"),
        ("benchmarks/prediction_form.py", "--size", "128x128", "--batch", "1", "--rounds", "1"),
        (
            *("benchmarks/prediction_form.py", "--model", "lite0", "--baseline", "unfused"),
            *("--size", "128x128", "--batch", "1", "--rounds", "1"),
        ),
        ("benchmarks/matmul_sizes.py", "--sizes", "64,128", "--seconds", "0.05"),
        ("benchmarks/conv_rates.py", "--batch", "1", "--seconds", "0.01"),
        ("benchmarks/generator_compile.py", "--config", "default", "--size", "128x128"),
        (
            *("benchmarks/generator_compile.py", "--config", "default", "--size", "128x128"),
            *("--eager-only", "--malloc-default"),
        ),
        (
            *("benchmarks/colour_versions.py", "--before", "HEAD", "--size", "16x32"),
            *("--rounds", "1", "--ops"),
        ),
    ],
    ids=lambda args: Path(args[0]).name,
)
def test_benchmark_runs(args: tuple[str, ...]) -> None:
    assert '"cpu"' in run_script(*args)


def test_train_flops_counts_a_learning_encoder_below_torchs_formula() -> None:
    lines = run_script("benchmarks/train_flops.py", "--batch", "1").splitlines()
    counts = {" ".join(line.split()[:-2]): float(line.split()[-2]) for line in lines}
    assert counts["frozen vidcolour"] == counts["frozen torch's formula"]
    assert counts["learning vidcolour"] < counts["learning torch's formula"] / 3


def test_chroma_gain_runs(tmp_path: Path) -> None:
    write_photos(tmp_path / "photos", 2)
    out = run_script(
        "experiments/chroma_gain.py",
        "--model", "default",
        "--data", str(tmp_path / "photos"),
        "--gains", "1.0,1.2",
        "--size", "128",
    )  # fmt: skip
    assert "| 1.2 |" in out
