"""`vidcolour batch` and `vidcolour report` (issue 7): mixed folders, resume, kill -9, shards."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tests.helpers import ledger_rows as rows
from tests.video_helpers import TINY, save_tiny_model, times
from vidcolour.batch import report, runner
from vidcolour.batch.ledger import LEDGER_NAME, Ledger, Row
from vidcolour.batch.plan import Item, Shard, plan_batch
from vidcolour.batch.progress import BatchProgress
from vidcolour.batch.report import needs_a_look, summary
from vidcolour.batch.runner import Batch, Outcome, Settings
from vidcolour.cli import main
from vidcolour.colouriser import Colouriser
from vidcolour.errors import DiskFullError
from vidcolour.nets import build_generator
from vidcolour.progress import make_console
from vidcolour.video import codecs
from vidcolour.video.pipeline import VideoOptions, VideoReport
from vidcolour.video.synth import write_clip
from vidcolour.weights import save_generator

GOOD = ("one.mp4", "a/two.mkv", "a/b/three.mov")
BAD = {
    "a/corrupt.mp4": "not a video PyAV can read",
    "empty.mp4": "empty (0 bytes)",
    "text.mp4": "not a video PyAV can read",
}
FAST = ("--resolution", "64", "--preset", "ultrafast")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def make_archive(root: Path, frames: int = 8) -> Path:
    """Good clips in nested folders, a truncated clip, a zero-byte file, a text file named .mp4
    and an unrelated file."""
    (root / "a" / "b").mkdir(parents=True)
    write_clip(root / "one.mp4", frames=frames)
    write_clip(root / "a" / "two.mkv", frames=frames + 3, audio="flac")
    write_clip(root / "a" / "b" / "three.mov", frames=frames + 5)
    data = (root / "one.mp4").read_bytes()
    (root / "a" / "corrupt.mp4").write_bytes(data[: len(data) // 3])
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("not a video\n")
    (root / "notes.txt").write_text("catalogue notes\n")
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under root with its size, mtime and content hash."""
    return {
        p.relative_to(root).as_posix(): (
            p.stat().st_size,
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def batch(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["batch", *map(str, args), *FAST])
    return result.exit_code, result.output


def assert_output_valid(src: Path, out: Path) -> None:
    """The output has the input's frames at the input's times."""
    assert times(out) == pytest.approx(times(src), abs=1e-6), out


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*.tmp")]


def output_files(dst: Path) -> list[str]:
    return sorted(
        p.relative_to(dst).as_posix()
        for p in dst.rglob("*")
        if p.is_file() and not p.name.startswith(("vidcolour-", "."))
    )


# --------------------------------------------------------------------------- a mixed folder
def test_mixed_folder_good_outputs_failures_listed(model: Path, tmp_path: Path) -> None:
    src, dst = make_archive(tmp_path / "src"), tmp_path / "dst"
    before = snapshot(src)
    code, output = batch(src, "-o", dst, "--model", model)
    assert code == 3, output  # some failed
    assert "Traceback" not in output
    for rel in GOOD:
        assert_output_valid(src / rel, dst / rel)
    assert output_files(dst) == sorted(GOOD)
    assert snapshot(src) == before  # nothing written, changed or added in SRC_DIR
    ledger = rows(dst)
    assert set(ledger) == set(GOOD) | set(BAD)  # notes.txt is not part of the job
    for rel in GOOD:
        row = ledger[rel]
        assert row["status"] == "done" and row["error"] is None
        assert row["input_sha256"] == hashlib.sha256((src / rel).read_bytes()).hexdigest()
        assert row["output_sha256"] == hashlib.sha256((dst / rel).read_bytes()).hexdigest()
        assert row["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
        assert row["frames"] == len(times(src / rel)) and row["fps"] > 0
        assert row["colourfulness"] > 1 and 0 <= row["cdc"] < 1
        assert row["decode_error_share"] == 0
    for rel, reason in BAD.items():
        assert ledger[rel]["status"] == "failed" and reason in ledger[rel]["error"], rel
    for rel in (*GOOD, *BAD):
        assert f"] {rel}: " in output  # a progress line per file
    report = (dst / "vidcolour-report.md").read_text()
    for rel, reason in BAD.items():
        assert f"`{rel}`: failed: " in report and reason in report
    assert "| done | 3 |" in report and "| failed | 3 |" in report
    assert "<tr class='failed'>" in (dst / "vidcolour-report.html").read_text()
    assert temp_files(dst) == []


def test_rerun_redoes_nothing_and_retries_only_when_asked(model: Path, tmp_path: Path) -> None:
    src, dst = make_archive(tmp_path / "src"), tmp_path / "dst"
    batch(src, "-o", dst, "--model", model)
    first, outputs = rows(dst), snapshot(dst)
    code, output = batch(src, "-o", dst, "--model", model)
    assert code == 3
    assert "0 done now, 3 already done, 3 failed" in output
    again = rows(dst)
    for rel in (*GOOD, *BAD):
        assert dict(again[rel]) == dict(first[rel])  # untouched records, failures left alone
    assert {k: v for k, v in snapshot(dst).items() if not k.startswith("vidcolour-")} == {
        k: v for k, v in outputs.items() if not k.startswith("vidcolour-")
    }
    code, _ = batch(src, "-o", dst, "--model", model, "--retry-failed")
    assert code == 3
    assert all(rows(dst)[rel]["attempts"] == 2 for rel in BAD)
    write_clip(src / "text.mp4", frames=5)  # the archivist replaces a bad file: it is redone
    code, output = batch(src, "-o", dst, "--model", model)
    assert rows(dst)["text.mp4"]["status"] == "done"
    assert_output_valid(src / "text.mp4", dst / "text.mp4")
    os.utime(src / "one.mp4")  # touched, same content: the output is kept
    old = (dst / "one.mp4").stat().st_mtime_ns
    code, output = batch(src, "-o", dst, "--model", model)
    assert "one.mp4: done (input touched, content unchanged" in output
    assert (dst / "one.mp4").stat().st_mtime_ns == old


def test_another_model_redoes_the_outputs(model: Path, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    write_clip(src / "one.mp4", frames=5)
    batch(src, "-o", dst, "--model", model)
    other = tmp_path / "other.safetensors"
    torch.manual_seed(1)
    save_generator(other, build_generator(TINY), name="tiny-2")
    code, output = batch(src, "-o", dst, "--model", other)
    assert code == 0, output
    row = rows(dst)["one.mp4"]
    assert row["model_sha256"] == hashlib.sha256(other.read_bytes()).hexdigest()
    assert row["attempts"] == 2
    assert_output_valid(src / "one.mp4", dst / "one.mp4")


def test_other_settings_redo_the_outputs(model: Path, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    write_clip(src / "one.mkv", frames=5)
    batch(src, "-o", dst, "--model", model)
    code, output = batch(src, "-o", dst, "--model", model, "--crf", "30")
    assert code == 0 and "1 done now" in output


def test_a_codec_that_renames_the_outputs_replaces_them(model: Path, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    write_clip(src / "one.mp4", frames=5)

    def run(*codec: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, ["batch", str(src), "-o", str(dst), "--model",
                                           str(model), "--resolution", "64", *codec])  # fmt: skip
        return result.exit_code, result.output

    assert run()[0] == 0 and output_files(dst) == ["one.mp4"]
    assert run("--codec", "ffv1")[0] == 0 and output_files(dst) == ["one.mkv"]
    assert "replaces one.mp4, which this batch made" in (Ledger(dst).get("one.mp4").notices or "")
    code, output = run()  # and back: the batch's own outputs, never "not made by this batch"
    assert code == 0 and "1 done now" in output and output_files(dst) == ["one.mp4"]


# --------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("where", ["inside", "same", "around"])
def test_refuses_overlapping_directories(model: Path, tmp_path: Path, where: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    write_clip(src / "one.mp4", frames=3)
    before = snapshot(tmp_path)
    if where == "inside":
        args: tuple[Path, Path] = (src, src / "out")
    elif where == "same":
        args = (src, src)
    else:
        args = (src, tmp_path)
    code, output = batch(args[0], "-o", args[1], "--model", model)
    assert code == 1
    assert "Traceback" not in output
    assert [line for line in output.splitlines() if line.startswith("Error:")], output
    assert snapshot(tmp_path) == before


def test_bad_shard_and_missing_source(model: Path, tmp_path: Path) -> None:
    code, output = batch(tmp_path / "nope", "-o", tmp_path / "dst", "--model", model)
    assert code == 1 and "is not a directory" in output
    (tmp_path / "src").mkdir()
    code, output = batch(tmp_path / "src", "-o", tmp_path / "dst", "--shard", "3/2")
    assert code == 2 and "K must be from 1 to N" in output  # a usage error
    assert not (tmp_path / "dst").exists()


@pytest.mark.parametrize("pattern", ["", "."])
def test_an_empty_pattern_is_a_usage_error(model: Path, tmp_path: Path, pattern: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    code, output = batch(src, "-o", tmp_path / "dst", "--model", model, "--pattern", pattern)
    assert code == 2 and f"--pattern '{pattern}': empty pattern" in output, output


def test_symlinks_out_of_the_source_are_not_followed(model: Path, tmp_path: Path) -> None:
    src, dst, outside = tmp_path / "src", tmp_path / "dst", tmp_path / "outside"
    src.mkdir()
    outside.mkdir()
    write_clip(outside / "secret.mp4", frames=3)
    write_clip(src / "real.mp4", frames=3)
    (src / "escape.mp4").symlink_to(outside / "secret.mp4")
    (src / "alias.mp4").symlink_to(src / "real.mp4")
    (src / "folder").symlink_to(outside, target_is_directory=True)
    code, output = batch(src, "-o", dst, "--model", model)
    assert code == 3, output
    ledger = rows(dst)
    assert ledger["escape.mp4"]["status"] == "skipped"
    assert "outside the source" in ledger["escape.mp4"]["error"]
    assert ledger["alias.mp4"]["status"] == "done"
    assert "folder/: a symlinked folder, not followed" in output
    assert "folder/secret.mp4" not in ledger
    assert output_files(dst) == ["alias.mp4", "real.mp4"]


def test_outputs_it_did_not_make_are_not_replaced(model: Path, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    write_clip(src / "one.mp4", frames=3)
    (dst / "one.mp4").write_bytes(b"someone else's file")
    code, _ = batch(src, "-o", dst, "--model", model)
    assert code == 3
    assert rows(dst)["one.mp4"]["status"] == "skipped"
    assert (dst / "one.mp4").read_bytes() == b"someone else's file"
    code, _ = batch(src, "-o", dst, "--model", model, "--overwrite")
    assert code == 0
    assert_output_valid(src / "one.mp4", dst / "one.mp4")


def test_two_inputs_for_one_output_name(model: Path, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    write_clip(src / "reel.mp4", frames=3)
    write_clip(src / "reel.webm", frames=3, codec="libvpx-vp9", pix_fmt="yuv420p")
    code, _ = batch(src, "-o", dst, "--model", model)
    assert code == 3
    ledger = rows(dst)
    assert ledger["reel.mp4"]["status"] == "done"
    assert ledger["reel.webm"]["status"] == "skipped"
    assert "already that of reel.mp4" in ledger["reel.webm"]["error"]


def test_a_file_that_disappears_is_a_failure(model: Path, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for name in ("a.mp4", "b.mp4"):
        write_clip(src / name, frames=3)
    plan = plan_batch(src, dst, (), "h264", Shard())
    (src / "a.mp4").unlink()  # between the walk and its turn
    colouriser = Colouriser.load(str(model), "cpu", resolution=64)
    result = Batch(
        plan, colouriser, VideoOptions(), Settings("h264", None, None, None, 64, "auto")
    ).run()
    assert result.outcomes == {"a.mp4": Outcome.FAILED, "b.mp4": Outcome.DONE}
    assert rows(dst)["a.mp4"]["error"] == "the file disappeared before it could be read"


def test_segments_of_an_input_deleted_are_removed(model: Path, tmp_path: Path) -> None:
    """A film deleted after a run made some of its segments is never planned again: its work
    folder, about the output's size, must not stay in DST_DIR for good."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    write_clip(src / "a.mp4", frames=3)
    plan = plan_batch(src, dst, (), "h264", Shard())
    (dst / ".a.mp4.vidcolour-work").mkdir(parents=True)
    (dst / ".a.mp4.vidcolour-work" / "00000.mp4").write_bytes(b"segment")
    (src / "a.mp4").unlink()
    colouriser = Colouriser.load(str(model), "cpu", resolution=64)
    result = Batch(
        plan, colouriser, VideoOptions(), Settings("h264", None, None, None, 64, "auto")
    ).run()
    assert result.outcomes == {"a.mp4": Outcome.FAILED}
    assert not (dst / ".a.mp4.vidcolour-work").exists()


def test_a_full_disk_stops_the_batch(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        write_clip(src / name, frames=3)
    real = runner.colourise_video

    def fill_up(colouriser: Colouriser, source: Path, *args: object, **kwargs: object) -> object:
        if source.name == "b.mp4":
            raise DiskFullError(f"cannot write {dst / 'b.mp4'}: the disk is full")
        return real(colouriser, source, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "colourise_video", fill_up)
    code, output = batch(src, "-o", dst, "--model", model)
    assert code == 1 and "Traceback" not in output
    assert "Error: stopped: cannot write" in output and "the disk is full" in output
    statuses = {rel: r["status"] for rel, r in rows(dst).items()}
    # b given back, c never started: listed as pending, not failed
    assert statuses == {"a.mp4": "done", "b.mp4": "pending", "c.mp4": "pending"}
    monkeypatch.setattr(runner, "colourise_video", real)
    code, output = batch(src, "-o", dst, "--model", model)
    assert code == 0 and "2 done now, 1 already done" in output


def test_a_name_that_is_not_utf8_is_colourised_and_kept_exactly(
    model: Path, tmp_path: Path
) -> None:
    """A Latin-1 name (an old tape's filesystem) is read with surrogate escapes: it is done
    like any other, its output has the same bytes for a name, and it is shown readably."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    latin1 = os.fsdecode(b"caf\xe9.mp4")
    write_clip(src / latin1, frames=3)
    write_clip(src / "zz.mp4", frames=3)
    code, output = batch(src, "-o", dst, "--model", model)
    assert code == 0, output
    assert "caf\ufffd.mp4: done" in output and "Traceback" not in output
    assert_output_valid(src / latin1, dst / latin1)
    assert sorted(os.listdir(os.fsencode(dst))) == [
        b"caf\xe9.mp4", b"vidcolour-ledger.sqlite", b"vidcolour-report.html",
        b"vidcolour-report.md", b"zz.mp4",
    ]  # fmt: skip
    assert [(r.rel, r.status) for r in Ledger(dst).rows()] == [
        (latin1, "done"),
        ("zz.mp4", "done"),
    ]  # fmt: skip  (by the name's bytes: SQLite would put the name kept as bytes last)
    assert "| caf\ufffd.mp4 | done |" in (dst / "vidcolour-report.md").read_text()
    code, output = batch(src, "-o", dst, "--model", model)
    assert code == 0 and "0 done now, 2 already done" in output, output


def test_a_damaged_ledger_page_is_one_line_in_batch_and_report(model: Path, tmp_path: Path) -> None:
    """Damage in a data page shows only when a statement reads it, after the ledger opened
    fine: still the one-line "not a usable ledger", in batch and in report."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    write_clip(src / "one.mp4", frames=3)
    dst.mkdir()
    Ledger(dst).add_pending((f"reel-{i:04d}/{'x' * 60}.mp4" for i in range(300)), "1/1")
    db = sqlite3.connect(dst / LEDGER_NAME)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'files'").fetchone()[0]
    db.close()
    with (dst / LEDGER_NAME).open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"Z" * page_size)
    code, output = batch(src, "-o", dst, "--model", model)
    assert code == 1 and "Traceback" not in output, output
    assert "is not a usable ledger (database disk image is malformed)" in output
    result = CliRunner().invoke(main, ["report", str(dst)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "is not a usable ledger (database disk image is malformed)" in result.output


def test_a_read_only_ledger_is_one_line(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests may run as root, for whom chmod changes nothing: SQLite opens the ledger
    read-only instead (mode=ro), which fails as a read-only file or mount does, at the first
    write; opening and reading succeed, so the report still works."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    write_clip(src / "one.mp4", frames=3)
    assert batch(src, "-o", dst, "--model", model)[0] == 0
    real = sqlite3.connect

    def read_only(path: object, **kwargs: object) -> sqlite3.Connection:
        return real(f"file:{path}?mode=ro", uri=True, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite3, "connect", read_only)
    code, output = batch(src, "-o", dst, "--model", model)
    assert code == 1 and "Traceback" not in output, output
    assert "is not a usable ledger (attempt to write a readonly database)" in output
    result = CliRunner().invoke(main, ["report", str(dst)])
    assert result.exit_code == 0 and "| one.mp4 | done |" in result.output


def test_a_full_disk_in_a_ledger_write_says_so_and_gives_the_file_back(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a full disk SQLite rolls the transaction back itself; the error shown is that one
    (not the failed second ROLLBACK's), and the file in hand goes back to pending."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for name in ("a.mp4", "b.mp4"):
        write_clip(src / name, frames=3)

    def disk_full(self: Ledger, row: Row) -> None:
        with self._transaction() as db:
            db.execute("ROLLBACK")  # what SQLite does on SQLITE_FULL
            raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Ledger, "finish", disk_full)
    code, output = batch(src, "-o", dst, "--model", model)
    assert code == 1 and "Traceback" not in output, output
    assert "(database or disk is full)" in output and "cannot rollback" not in output
    assert {rel: r["status"] for rel, r in rows(dst).items()} == {
        "a.mp4": "pending",
        "b.mp4": "pending",
    }
    monkeypatch.undo()
    code, output = batch(src, "-o", dst, "--model", model)
    assert code == 0, output


# --------------------------------------------------------------------------- shards
def test_shards_partition_the_list_stably() -> None:
    paths = [f"reel-{i}/part {j}.mkv" for i in range(40) for j in range(5)]
    owners = [[k for k in range(1, 5) if Shard(k, 4).holds(p)] for p in paths]
    assert all(len(o) == 1 for o in owners)  # every file in exactly one shard
    sizes = [sum(o == [k] for o in owners) for k in range(1, 5)]
    assert min(sizes) > 30  # roughly even (200 files, 4 shards)
    # the split depends on the path alone: not on the other files or their order
    assert [Shard(2, 4).holds(p) for p in paths] == [Shard(2, 4).holds(p) for p in paths[::-1]][
        ::-1
    ]
    assert Shard.parse(" 2 / 4 ") == Shard(2, 4)


def _spawn(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "vidcolour", "batch", *map(str, args), *FAST],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_shards_at_once_cover_every_file_once(model: Path, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    names = [f"d{i % 3}/clip{i}.mp4" for i in range(10)]
    for name in names:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        write_clip(src / name, frames=6)
    workers = [_spawn(src, "-o", dst, "--model", model, "--shard", f"{k}/2") for k in (1, 2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    ledger = rows(dst)
    assert sorted(ledger) == sorted(names)
    for name, row in ledger.items():
        assert row["status"] == "done" and row["attempts"] == 1
        k = int(row["shard"].split("/")[0])
        assert Shard(k, 2).holds(name)
        assert_output_valid(src / name, dst / name)
    assert output_files(dst) == sorted(names)
    assert Ledger(dst).integrity() == "ok"


def test_two_processes_on_one_shard_never_do_a_file_twice(model: Path, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    names = [f"clip{i}.mp4" for i in range(8)]
    for name in names:
        write_clip(src / name, frames=20)
    workers = [_spawn(src, "-o", dst, "--model", model) for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert {w.returncode for w in workers} <= {0, 3}, outputs  # 3: some held by the other
    ledger = rows(dst)
    assert all(ledger[n]["status"] == "done" and ledger[n]["attempts"] == 1 for n in names)
    done_now = sum(int(o.split(" done now")[0].rsplit("\n", 1)[-1]) for o in outputs)
    assert done_now == len(names), outputs
    assert Ledger(dst).integrity() == "ok"


# --------------------------------------------------------------------------- crashes
def _wait_for(condition: object, process: subprocess.Popen[str], timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.002)
    return False


def _assert_outputs_whole_or_absent(src: Path, dst: Path, names: list[str]) -> None:
    for name in names:
        if (dst / name).exists():
            assert_output_valid(src / name, dst / name)


def test_kill_9_at_any_moment_then_rerun(model: Path, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    names = [f"reels/r{i}.mkv" for i in range(5)]
    for name in names:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        write_clip(src / name, frames=40, size=(144, 192), audio="flac")
    args = (src, "-o", dst, "--model", model)
    moments = [
        lambda: temp_files(dst),  # mid-write of an output
        lambda: len(output_files(dst)) >= 2 and temp_files(dst),  # later, mid-write again
        lambda: (dst / LEDGER_NAME).exists(),  # as the ledger appears
    ]
    killed = 0
    for moment in moments:
        process = _spawn(*args)
        if _wait_for(moment, process):
            process.send_signal(signal.SIGKILL)
            killed += 1
        process.communicate(timeout=120)
        _assert_outputs_whole_or_absent(src, dst, names)
    assert killed >= 2  # the clips are long enough to catch it mid-write
    process = _spawn(*args)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, output
    for name in names:
        assert_output_valid(src / name, dst / name)
    assert output_files(dst) == sorted(names)  # none duplicated
    assert temp_files(dst) == []
    assert {r["status"] for r in rows(dst).values()} == {"done"}
    assert Ledger(dst).integrity() == "ok"


def test_sigterm_gives_the_file_back(model: Path, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for i in range(3):
        write_clip(src / f"r{i}.mkv", frames=60, size=(144, 192))
    process = _spawn(src, "-o", dst, "--model", model)
    assert _wait_for(lambda: temp_files(dst), process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
    assert temp_files(dst) == []
    statuses = {rel: r["status"] for rel, r in rows(dst).items()}
    assert sorted(statuses) == ["r0.mkv", "r1.mkv", "r2.mkv"]  # every file, finished or not
    assert "pending" in statuses.values()  # the file in hand given back, and any not reached
    assert set(statuses.values()) <= {"done", "pending"}
    report = CliRunner().invoke(main, ["report", str(dst)]).output
    for rel, status in statuses.items():
        assert (f"`{rel}`: pending: not finished" in report) == (status == "pending"), report
    code, output = batch(src, "-o", dst, "--model", model)
    assert code == 0, output


def test_a_signal_as_the_reports_are_written_leaves_them_whole(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM in a batch's last moment, as it writes its reports: they are still written whole
    and the exit status is the batch's (before, the signal's default ended the process with 143
    and left the report's temp file); a report's temp file that a batch killed in that moment
    left is removed by the next one. Found by a random kill soak."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    write_clip(src / "one.mp4", frames=4)
    stray = dst / ".vidcolour-report.md.k1113d00.tmp"  # as a kill -9 in atomic_path leaves it
    stray.write_text("half a report")
    render, sent = report.render, []

    def render_and_signal(ledger: Ledger, path: Path, *split: object) -> str:
        if not sent:  # one SIGTERM, as Slurm sends (a second one quits at once)
            sent.append(path)
            os.kill(os.getpid(), signal.SIGTERM)
        return render(ledger, path, *split)  # type: ignore[arg-type]

    def outside(signum: int, frame: object) -> None:
        raise AssertionError("a SIGTERM as the reports were written was not the batch's")

    monkeypatch.setattr(report, "render", render_and_signal)
    previous = signal.signal(signal.SIGTERM, outside)
    try:
        code, output = batch(src, "-o", dst, "--model", model)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert sent and code == 0, output
    assert temp_files(dst) == []
    assert "| done | 1 |" in (dst / "vidcolour-report.md").read_text()
    assert "one.mp4" in (dst / "vidcolour-report.html").read_text()


class _StopWhileHashing(runner.Silent):
    """Events that ask the batch to stop at the first block of the input's hash, as SIGTERM
    would, and keep what hashing reported."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.hashed: list[tuple[str, int, int]] = []

    def hashing(self, item: Item, what: str, done: int, total: int) -> None:
        self.hashed.append((what, done, total))
        self.stop.set()


def test_a_stop_while_hashing_is_prompt(model: Path, tmp_path: Path) -> None:
    """A stop (SIGTERM) lands between the hash's blocks, not after the whole input: a 100 GB
    master takes minutes, longer than Slurm waits before SIGKILL. Input: a clip padded with a
    sparse 64 MiB box that players skip (it costs no disk)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    write_clip(src / "big.mp4", frames=3)
    with (src / "big.mp4").open("ab") as f:
        f.write((8 + 64 * 2**20).to_bytes(4, "big") + b"free")
        f.truncate(f.tell() + 64 * 2**20)
    plan = plan_batch(src, dst, (), "h264", Shard())
    colouriser = Colouriser.load(str(model), "cpu", resolution=64)
    work = Batch(plan, colouriser, VideoOptions(), Settings("h264", None, None, None, 64, "auto"))
    events = _StopWhileHashing(work.stop)
    result = work.run(events)
    assert result.cancelled and result.outcomes == {}
    assert events.hashed == [("input", 2**20, (src / "big.mp4").stat().st_size)]
    assert rows(dst)["big.mp4"]["status"] == "pending"


def test_hashing_shows_progress_in_a_log(tmp_path: Path) -> None:
    """Off a terminal, hashing a file writes plain lines (MiB done, rate, ETA), as colourising
    does: a log does not go silent for the minutes a master's hash takes."""
    log = io.StringIO()
    item = Item("reel.mkv", tmp_path / "reel.mkv", tmp_path / "out.mkv")
    with BatchProgress(make_console(file=log), [item]) as progress:
        for mib in range(0, 101, 5):
            progress.hashing(item, "input", mib * 2**20, 100 * 2**20)
    lines = log.getvalue().splitlines()
    assert any(
        line.startswith("reel.mkv (hashing the input): 50/100 MiB (50%), ") for line in lines
    ), lines
    assert all("MiB/s" in line and "ETA" in line for line in lines) and len(lines) >= 5


# --------------------------------------------------------------------------- report
def test_report_command(model: Path, tmp_path: Path) -> None:
    src, dst = make_archive(tmp_path / "src"), tmp_path / "dst"
    batch(src, "-o", dst, "--model", model)
    result = CliRunner().invoke(main, ["report", str(dst)])
    assert result.exit_code == 0
    assert "## Needs a look" in result.output and "`empty.mp4`: failed: " in result.output
    for rel in GOOD:
        assert f"| {rel} | done |" in result.output
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", str(dst), "-o", str(out)])
    assert result.exit_code == 0 and out.read_text().startswith("<!doctype html>")
    result = CliRunner().invoke(main, ["report", str(src)])
    assert result.exit_code == 1 and "not a vidcolour batch output" in result.output


def test_report_sets_apart_inputs_gone_from_the_source(model: Path, tmp_path: Path) -> None:
    """A file deleted from SRC_DIR after its batch keeps its row and output, but the report
    neither counts it among the batch's files nor asks for a look at it; with no input found
    (a mount away, an empty mount point, the report read elsewhere) every row counts as before."""
    src, dst = make_archive(tmp_path / "src"), tmp_path / "dst"
    batch(src, "-o", dst, "--model", model)
    (src / "one.mp4").unlink()
    (src / "empty.mp4").unlink()
    report = CliRunner().invoke(main, ["report", str(dst)]).output
    assert "| files | 4 |" in report and "| done | 2 |" in report and "| failed | 2 |" in report
    assert "| inputs gone from the source (rows kept, not counted) | 2 |" in report
    assert "| one.mp4 | done, input gone |" in report and (dst / "one.mp4").is_file()
    assert "| empty.mp4 | failed, input gone |" in report and "`empty.mp4`" not in report
    src.rename(tmp_path / "away")
    report = CliRunner().invoke(main, ["report", str(dst)]).output
    assert "| files | 6 |" in report and "gone" not in report
    src.mkdir()  # an empty mount point: none found, so none is taken as gone
    report = CliRunner().invoke(main, ["report", str(dst)]).output
    assert "| files | 6 |" in report and "gone" not in report


def test_needs_a_look_flags() -> None:
    done = Row("", "done", decode_error_share=0.0, colourfulness=30.0, cdc=0.01)
    records = [
        replace(done, rel="ok.mp4", frames=100, expected_frames=100),
        replace(done, rel="estimate.mp4", frames=99, expected_frames=100),
        replace(done, rel="steady.mp4"),
        replace(done, rel="short.mp4", frames=34, expected_frames=120),
        Row("bad.mp4", "failed", error="not a video"),
        replace(done, rel="damaged.mp4", decode_error_share=0.05),
        replace(done, rel="grey.mp4", colourfulness=1.0),
        replace(done, rel="flicker.mp4", cdc=0.05),
    ]
    why = {row.rel: reason for row, reason in needs_a_look(records)}
    assert set(why) == {"short.mp4", "bad.mp4", "damaged.mp4", "grey.mp4", "flicker.mp4"}
    assert why["short.mp4"] == "short: 34 of the 120 frames its container announces"
    assert why["bad.mp4"] == "failed: not a video"
    assert why["damaged.mp4"] == "damaged input: 5.0% of frames"
    assert why["grey.mp4"] == "nearly grey output (colourfulness 1.0)"
    assert why["flicker.mp4"] == "flicker: CDC 0.0500, batch median 0.0100"


def test_report_fps_after_a_resume_counts_the_frames_colourised_then(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A film that went on from an earlier run's segments has all its frames but only the
    last run's time: its log line and notice say so, and the summary's mean fps is of the
    frames that time colourised (here none: every frame came from segments)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    write_clip(src / "film.mp4", frames=6)
    real = runner.colourise_video

    def resumed(*args: object, **kwargs: object) -> VideoReport:
        report = real(*args, **kwargs)  # type: ignore[arg-type]
        report.resumed_frames = report.frames  # as a rerun after a kill past the last segment
        return report

    monkeypatch.setattr(runner, "colourise_video", resumed)
    code, output = batch(src, "-o", dst, "--model", model)
    assert code == 0 and "6 of them from an earlier run's segments" in output, output
    row = Ledger(dst).get("film.mp4")
    assert row is not None and row.frames == 6 and row.fps == 0.0
    assert "not in its time and fps" in (row.notices or "")
    ran = replace(row, rel="ran.mp4", frames=100, colourise_seconds=10.0, fps=10.0)
    figures = dict(summary([row, ran]))
    assert figures["frames done"] == "106"
    assert figures["mean fps"] == f"{100 / (10 + (row.colourise_seconds or 0)):.1f}"


def test_the_settings_key_is_of_the_resolved_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ledger keys on what the encoder gets: the codec's defaults filled in, so that a
    changed default redoes the files it changes, and naming the default changes nothing."""
    implicit = Settings("h264", None, None, None, 64, "auto")
    explicit = Settings("h264", 18, "veryfast", "grain", 64, "auto")
    assert implicit.key() == explicit.key()
    assert Settings("ffv1", None, None, None, 64, "auto").resolved().crf is None
    assert Settings("h264", None, None, "none", 64, "auto").key() != implicit.key()
    before = implicit.key()
    monkeypatch.setitem(codecs.CODECS, "h264", replace(codecs.CODECS["h264"], crf=20))
    assert implicit.key() != before


def test_a_ledger_of_unresolved_keys_is_not_redone(model: Path, tmp_path: Path) -> None:
    """Ledgers written before keys were resolved hold the settings as asked for: their done
    files stay done (an archive's days of work are not redone for a key format)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    write_clip(src / "one.mkv", frames=5)
    batch(src, "-o", dst, "--model", model)
    db = sqlite3.connect(dst / LEDGER_NAME)
    settings = Settings("h264", None, "ultrafast", None, 64, "auto")  # FAST, as asked for
    with db:
        db.execute("UPDATE files SET settings = ?", (settings.key(resolved=False),))
    db.close()
    assert settings.key(resolved=False) != settings.key()
    code, output = batch(src, "-o", dst, "--model", model)
    assert code == 0 and "0 done now, 1 already done" in output, output
