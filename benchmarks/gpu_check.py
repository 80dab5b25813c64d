"""The GPU check: everything a short loan of a GPU machine should measure, in one JSON.

    bash benchmarks/gpu_check.sh [--dry-run] [--out DIR]

Steps, each with its own time limit so that the whole stays under 8 minutes on one GPU:

1. the `cuda`-marked tests (`pytest -m cuda`);
2. `vidcolour bench` at 1080p and at 576p on synthetic H.264 clips, on the GPU;
3. `vidcolour batch --jobs 1, 2, 4` over four 576p clips: one process, one shared model; the
   encoder runs on the CPU cores, the expected limit on a GPU;
4. 60 s of `vidcolour train` each for the paper-size configuration (`ibn_sn_md`) and the
   bundled model's (`default`), on synthetic photos made here: img/s and MFU as the trainer
   logs them (MFU against the bf16 matmul rate it measures at start-up).

Writes DIR/gpu_check.json, each step's own files beside it and the end of every step's log in
DIR/logs.txt, and prints a summary.
``--dry-run`` runs every step on the CPU at toy sizes (seconds each): it checks the plumbing,
not the speed, and runs in the test suite (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

FULL = {
    "device": "cuda",
    "bench": {"1080p": ((1080, 1920), 240), "576p": ((576, 720), 400)},
    "jobs_clips": ((576, 720), 250, 4),  # size, frames, files
    "jobs": (1, 2, 4),
    "train_seconds": 60,
    "train_steps": 1000000,  # stopped by the clock
    "train": {"batch": 16, "size": 256, "log_every": 10},
    "limits_s": {"tests": 90, "bench": 90, "batch": 80, "train": 90},
}
DRY = {
    "device": "cpu",
    "bench": {"1080p": ((72, 128), 16), "576p": ((64, 80), 16)},
    "jobs_clips": ((64, 80), 8, 2),
    "jobs": (1, 2),
    "train_seconds": 120,  # a bound only: the dry run stops after train_steps
    "train_steps": 6,
    "train": {"batch": 2, "size": 128, "log_every": 2},  # 128: the generators' smallest input
    "limits_s": {"tests": 120, "bench": 60, "batch": 60, "train": 150},
}


def vidcolour(*args: str, timeout: float, log: Path | None = None) -> subprocess.CompletedProcess:
    out = log.open("w") if log else subprocess.DEVNULL
    try:
        return subprocess.run(
            [sys.executable, "-m", "vidcolour", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


def synthetic_clip(path: Path, size: tuple[int, int], frames: int) -> Path:
    from vidcolour.video.synth import write_clip

    return write_clip(path, frames=frames, size=size)


def synthetic_photos(folder: Path, count: int, size: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
        image.save(folder / f"photo{i:03d}.jpg", quality=90)
    return folder


def step_tests(cfg: dict[str, Any], out: Path) -> dict[str, Any]:
    log = out / "tests.log"
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider"],
            stdout=f,
            stderr=subprocess.STDOUT,
            timeout=cfg["limits_s"]["tests"],
            check=False,
        )
    tail = log.read_text().strip().splitlines()[-1:] or [""]
    # pytest: 0 all passed, 5 nothing collected (no cuda tests on this tree): neither is failure
    return {"rc": proc.returncode, "ok": proc.returncode in (0, 5), "summary": tail[0],
            "seconds": time.perf_counter() - start}  # fmt: skip


def step_bench(cfg: dict[str, Any], out: Path) -> dict[str, Any]:
    results = {}
    for name, (size, frames) in cfg["bench"].items():
        clip = synthetic_clip(out / f"bench_{name}.mp4", size, frames)
        target = out / f"bench_{name}.json"
        proc = vidcolour("bench", "--input", str(clip), "--json", str(target),
                         "--device", cfg["device"], timeout=cfg["limits_s"]["bench"],
                         log=out / f"bench_{name}.log")  # fmt: skip
        results[name] = json.loads(target.read_text()) if proc.returncode == 0 else None
        clip.unlink()
    return results


def step_jobs(cfg: dict[str, Any], out: Path) -> dict[str, Any]:
    size, frames, files = cfg["jobs_clips"]
    src = out / "jobs_src"
    src.mkdir(exist_ok=True)
    for i in range(files):
        synthetic_clip(src / f"clip{i}.mp4", size, frames)
    results = {}
    for jobs in cfg["jobs"]:
        dst = out / f"jobs_{jobs}"
        start = time.perf_counter()
        proc = vidcolour("batch", str(src), "-o", str(dst), "--jobs", str(jobs),
                         "--device", cfg["device"], timeout=cfg["limits_s"]["batch"],
                         log=out / f"jobs_{jobs}.log")  # fmt: skip
        seconds = time.perf_counter() - start
        results[str(jobs)] = {
            "rc": proc.returncode,
            "seconds": seconds,
            "fps": files * frames / seconds if proc.returncode == 0 else None,
        }
    return results


def step_train(cfg: dict[str, Any], out: Path) -> dict[str, Any]:
    photos = synthetic_photos(out / "photos", 64, cfg["train"]["size"])
    results = {}
    for config in ("ibn_sn_md", "default"):
        run = out / f"train_{config}"
        cmd = [sys.executable, "-m", "vidcolour", "train", "--config", config,
               "--data", str(photos), "--out", str(run), "--device", cfg["device"],
               "--max-steps", str(cfg["train_steps"]),
               "--set", f"train.batch_size={cfg['train']['batch']}",
               "--set", f"train.image_size={cfg['train']['size']}",
               "--set", f"train.log_every={cfg['train']['log_every']}",
               "--set", "train.checkpoint_every=1000000"]  # fmt: skip
        with (out / f"train_{config}.log").open("w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            try:
                proc.wait(timeout=cfg["train_seconds"])
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)  # the trainer stops cleanly at a step
                try:
                    proc.wait(timeout=cfg["limits_s"]["train"] - cfg["train_seconds"])
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        metrics = run / "metrics.jsonl"
        records = []
        if metrics.exists():
            records = [json.loads(line) for line in metrics.read_text().splitlines() if line]
        windows = [r for r in records if r.get("kind") == "train" and "mfu" in r][1:]
        results[config] = {
            "windows": len(windows),
            "img_per_s": float(np.median([r["img_per_s"] for r in windows])) if windows else None,
            "mfu": float(np.median([r["mfu"] for r in windows])) if windows else None,
        }
    return results


def write_log_tails(out: Path, lines: int = 40) -> None:
    """DIR/logs.txt: the end of every step's log in one file. A device call brings back at most
    8 files, so gpu_check.json and this are the two to copy out."""
    with (out / "logs.txt").open("w") as tails:
        for log in sorted(out.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            tails.write(f"==> {log.name} <==\n" + "\n".join(text) + "\n\n")


def device_name(device: str) -> str:
    import torch

    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU")
    parser.add_argument("--out", type=Path, default=Path("gpu_check"))
    args = parser.parse_args()
    cfg = DRY if args.dry_run else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "schema": "vidcolour.gpu-check/1",
        "dry_run": args.dry_run,
        "device": device_name(cfg["device"]),
        "cpu_cores": os.cpu_count(),
    }
    start = time.perf_counter()
    for name, step in (("tests", step_tests), ("bench", step_bench), ("jobs", step_jobs),
                       ("train", step_train)):  # fmt: skip
        clock = time.perf_counter()
        try:
            result[name] = step(cfg, args.out)
        except (subprocess.TimeoutExpired, OSError, ValueError, ImportError) as exc:
            result[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"{name}: {time.perf_counter() - clock:.0f} s", flush=True)
        (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")
    bench = result.get("bench", {})
    if isinstance(bench.get("1080p"), dict):
        b = bench["1080p"]
        result["goals"] = {"e2e_over_encode_1080p": b["end_to_end_fps"] / b["encode_fps"]}
    train = result.get("train", {})
    for config, t in train.items() if isinstance(train, dict) else ():
        if isinstance(t, dict) and t.get("mfu") is not None:
            result.setdefault("goals", {})[f"train_mfu_{config}"] = t["mfu"]
    result["seconds"] = time.perf_counter() - start
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")
    write_log_tails(args.out)
    print(json.dumps({k: result[k] for k in ("device", "seconds", "goals") if k in result}))


if __name__ == "__main__":
    main()
