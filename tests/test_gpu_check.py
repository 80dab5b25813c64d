"""Issue 22: the GPU check script runs end to end on the CPU at toy sizes (--dry-run)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_dry_run_fills_every_section(tmp_path: Path) -> None:
    out = tmp_path / "check"
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["schema"] == "vidcolour.gpu-check/1" and result["dry_run"]
    assert "==> bench_1080p.log <==" in (out / "logs.txt").read_text()
    assert result["tests"]["ok"], result["tests"]
    for name in ("1080p", "576p"):
        bench = result["bench"][name]
        assert bench is not None and bench["end_to_end_fps"] > 0, name
    assert all(j["rc"] == 0 and j["fps"] > 0 for j in result["jobs"].values()), result["jobs"]
    for config in ("ibn_sn_md", "default"):
        assert result["train"][config]["windows"] > 0, result["train"]
        assert 0 < result["train"][config]["mfu"] < 1
    assert set(result["goals"]) == {
        "e2e_over_encode_1080p",
        "train_mfu_ibn_sn_md",
        "train_mfu_default",
    }


def test_missing_packages_come_from_the_deps_tarball(tmp_path: Path) -> None:
    """The GPU machine lacks PyAV and kornia: the script unpacks them from the tarball that
    benchmarks/gpu_deps.py makes, and says in one line when there is none."""
    blocked = tmp_path / "blocked"
    for name in ("av", "kornia"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text("raise ImportError('not on this machine')\n")
    packed = tmp_path / "packed"
    for name in ("av", "kornia"):
        (packed / name).mkdir(parents=True)
        (packed / name / "__init__.py").write_text("")
    deps = tmp_path / "deps.tar.xz"
    subprocess.run(["tar", "-cJf", str(deps), "-C", str(packed), "av", "kornia"], check=True)

    def check(deps: Path) -> subprocess.CompletedProcess:
        script = ROOT / "benchmarks" / "gpu_check.sh"
        env = {**os.environ, "PYTHONPATH": str(blocked), "GPU_DEPS": str(deps)}
        return subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True,
                              env=env, timeout=60, check=False)  # fmt: skip

    missing = check(tmp_path / "none.tar.xz")
    assert missing.returncode == 1 and missing.stderr.startswith("Error: PyAV or kornia missing")
    unpacked = check(deps)
    assert unpacked.returncode == 0 and "--dry-run" in unpacked.stdout, unpacked.stderr
