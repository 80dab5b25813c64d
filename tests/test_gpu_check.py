"""Issue 22: the GPU check script runs end to end on the CPU at toy sizes (--dry-run)."""

from __future__ import annotations

import json
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
