"""``vidcolour batch``: colourise every file of a plan, recording each outcome in the ledger.

Per file: claim it in the ledger, remove what a killed earlier attempt left, hash the input,
colourise into a temp file renamed into place when complete (fsutil.atomic_path), check the
output by reading it back, hash it, and record the outcome. A file already done with the same
input, model and settings is not touched again; one that failed stays failed until its input
changes or --retry-failed. Any error in one file is that file's failure, never the batch's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Protocol

import av
import numpy as np
import torch
from PIL import Image

from vidcolour.batch.ledger import Ledger, LedgerError, Row
from vidcolour.batch.plan import BatchPlan, Item, Shard
from vidcolour.colouriser import Colouriser
from vidcolour.defaults import STABILISE_STRENGTH
from vidcolour.errors import DiskFullError, VidcolourError
from vidcolour.fsutil import file_sha256, remove_temps
from vidcolour.metrics import colourfulness
from vidcolour.progress import plural
from vidcolour.run import colourise_image_file, is_image
from vidcolour.video.checks import TemporalChecks
from vidcolour.video.codecs import CODECS
from vidcolour.video.keyframes import find_keyframes, keyframes_digest, sidecar
from vidcolour.video.pipeline import Progress, VideoOptions, colourise_video
from vidcolour.video.segments import work_path


class Outcome(Enum):
    DONE = "done"  # colourised now
    ALREADY_DONE = "already done"  # done by an earlier run with the same input and settings
    FAILED = "failed"
    LEFT_FAILED = "left failed"  # failed earlier; not retried (no --retry-failed)
    SKIPPED = "skipped"
    BUSY = "busy"  # another live process holds it


class Cancelled(Exception):
    """The batch was asked to stop (Ctrl-C, SIGTERM): the file in hand is given back."""


@dataclass(frozen=True)
class Settings:
    """Everything besides the input and the model that decides what an output is."""

    codec: str
    crf: int | None
    preset: str | None
    tune: str | None
    resolution: int
    precision: str
    stabilise: bool = True
    strength: float = STABILISE_STRENGTH
    saturation: float = 1.0

    def resolved(self) -> Settings:
        """The same settings with the codec's defaults filled in (``Codec.resolve``)."""
        crf, preset, tune = CODECS[self.codec].resolve(self.crf, self.preset, self.tune)
        return replace(self, crf=crf, preset=preset, tune=tune)

    def key(self, keyframes: str | None = None, resolved: bool = True) -> str:
        """What the ledger records: the resolved settings, so that a changed default redoes
        the files it would change; ``keyframes``: the digest of a file's keyframes
        (video/keyframes.py), which shape its output too. ``resolved=False``: the key ledgers
        written before resolved keys hold (crf, preset and tune as asked for)."""
        settings = asdict(self.resolved() if resolved else self)
        if settings["saturation"] == 1.0:
            del settings["saturation"]  # so that ledgers from before --saturation still match
        if keyframes is not None:
            settings["keyframes"] = keyframes
        return json.dumps(settings, sort_keys=True)


class Events(Protocol):
    """What the batch tells its user interface. Called from worker threads."""

    def started(self, item: Item) -> None: ...

    def frames(self, item: Item, done: int, expected: int | None) -> None: ...

    def hashing(self, item: Item, what: str, done: int, total: int) -> None:
        """``done`` of ``total`` bytes of ``what`` ("input", "output") hashed."""

    def finished(self, item: Item, outcome: Outcome, message: str) -> None: ...


class Silent:
    """Events that show nothing: for library use of ``Batch``."""

    def started(self, item: Item) -> None:
        pass

    def frames(self, item: Item, done: int, expected: int | None) -> None:
        pass

    def hashing(self, item: Item, what: str, done: int, total: int) -> None:
        pass

    def finished(self, item: Item, outcome: Outcome, message: str) -> None:
        pass


@dataclass
class BatchResult:
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # rel -> outcome
    cancelled: bool = False

    def count(self, *outcomes: Outcome) -> int:
        return sum(o in outcomes for o in self.outcomes.values())

    @property
    def all_done(self) -> bool:
        return all(o in (Outcome.DONE, Outcome.ALREADY_DONE) for o in self.outcomes.values())


@dataclass
class Batch:
    """A plan, the model and the settings: what one ``vidcolour batch`` process runs."""

    plan: BatchPlan
    colouriser: Colouriser
    options: VideoOptions
    settings: Settings
    shard: Shard = field(default_factory=Shard)
    retry_failed: bool = False
    jobs: int = 1
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, events: Events | None = None) -> BatchResult:
        """Process every item; returns when all are settled or ``stop`` is set."""
        events = events or Silent()
        self.plan.dst_dir.mkdir(parents=True, exist_ok=True)
        ledger = Ledger(self.plan.dst_dir)
        ledger.set_meta({"source": str(self.plan.src_dir)})
        for row in ledger.dead_claims():  # a killed run's files: temp files gone, back to pending
            if row.output:
                remove_temps(self.plan.dst_dir / row.output)
            ledger.reset_dead(row, "interrupted: the process working on it stopped")
        ledger.add_pending((i.rel for i in self.plan.items if i.problem is None), str(self.shard))
        result = BatchResult()
        fatal: BaseException | None = None
        ledger.start_heartbeat()
        try:
            with ThreadPoolExecutor(self.jobs, thread_name_prefix="vidcolour-file") as pool:
                pending: dict[Future[Outcome], Item] = {}
                items = iter(self.plan.items)
                while True:
                    while len(pending) < self.jobs and not self.stop.is_set():
                        item = next(items, None)
                        if item is None:
                            break
                        pending[pool.submit(self._settle, ledger, item, events)] = item
                    if not pending:
                        break
                    finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    for future in finished:
                        item = pending.pop(future)
                        try:
                            result.outcomes[item.rel] = future.result()
                        except Cancelled:
                            result.cancelled = True
                        except (DiskFullError, LedgerError) as exc:  # every file would fail
                            self.stop.set()
                            fatal = fatal or exc
        finally:
            ledger.stop_heartbeat()
        if isinstance(fatal, LedgerError):
            raise VidcolourError(f"stopped: {fatal}; fix it, then run the same command again")
        if fatal is not None:
            raise VidcolourError(f"stopped: {fatal}; free space, then run the same command again")
        result.cancelled |= self.stop.is_set()
        return result

    # ------------------------------------------------------------------------ one file
    def _settle(self, ledger: Ledger, item: Item, events: Events) -> Outcome:
        outcome, message = self._process(ledger, item, events)
        events.finished(item, outcome, message)
        return outcome

    def _process(self, ledger: Ledger, item: Item, events: Events) -> tuple[Outcome, str]:
        if self.stop.is_set():
            raise Cancelled
        shard = str(self.shard)
        if item.problem is not None:
            ledger.record(Row(item.rel, "skipped", error=item.problem, shard=shard))
            return Outcome.SKIPPED, item.problem
        output = item.dst.relative_to(self.plan.dst_dir).as_posix()
        key = self._key(item)
        keys = (key, self._key(item, resolved=False))  # the second: an older ledger's
        for _ in range(_LOOKS):
            row = ledger.get(item.rel)
            try:
                stat: os.stat_result | None = item.src.stat()
            except OSError as exc:
                stat, reason = None, _read_error(exc)
            if row is not None and stat is not None and self._unchanged(row, stat, keys):
                if row.status == "done" and _output_intact(self.plan.dst_dir, row):
                    shutil.rmtree(work_path(item.dst), ignore_errors=True)  # killed after done
                    return Outcome.ALREADY_DONE, "already done"
                if row.status == "failed" and not self.retry_failed:
                    return Outcome.LEFT_FAILED, row.error or "failed"
            claim, before = ledger.claim(item.rel, output, shard, seen=row)
            if claim == "claimed":
                break
            if claim == "busy":
                return Outcome.BUSY, "another process is working on it"
        else:
            return Outcome.BUSY, "other processes keep changing its record"
        record = Row(item.rel, "failed", output=output, shard=shard, started=time.time())
        record.attempts = (before.attempts if before else 0) + 1
        record.model_sha256, record.settings = self.colouriser.sha256, key
        message = None
        try:
            remove_temps(item.dst)
            if stat is None:
                record.error = reason
            else:
                message = self._colourise(item, stat, before, record, events, ledger)
        except (Cancelled, DiskFullError, LedgerError):
            _give_back(ledger, item.rel, before)
            raise
        except Exception as exc:  # one file's failure, whatever it is, is not the batch's
            record.status, record.error = "failed", _one_line(exc).replace(str(item.src), item.rel)
        if record.status == "done":
            self._drop_superseded(ledger, before, record)
        try:
            ledger.finish(record)
        except LedgerError:
            _give_back(ledger, item.rel, before)
            raise
        if record.status == "done" or _deleted(item.src):
            # recorded, or its input deleted (it is never planned again): the segments are
            # not needed any more
            shutil.rmtree(work_path(item.dst), ignore_errors=True)
        if record.status == "done":
            return (
                Outcome.DONE,
                message
                or f"{plural(record.frames or 0, 'frame')} in {record.colourise_seconds:.1f} s",
            )
        return Outcome(record.status), record.error or record.status

    def _drop_superseded(self, ledger: Ledger, before: Row | None, record: Row) -> None:
        """Remove the file's earlier output when settings that name outputs changed (--codec
        ffv1: one.mp4 became one.mkv): it is this batch's, superseded, as an output of the same
        name is replaced; left behind, it would be recorded nowhere, and going back to the
        first settings would find it "not made by this batch". Only when it is as this batch
        wrote it (its size) and no other file's record names it."""
        if before is None or before.status != "done" or before.output in (None, record.output):
            return
        if not _output_intact(self.plan.dst_dir, before) or any(
            row.output == before.output for row in ledger.rows() if row.rel != record.rel
        ):
            return
        (self.plan.dst_dir / str(before.output)).unlink(missing_ok=True)
        note = f"replaces {before.output}, which this batch made with other settings"
        record.notices = "; ".join(filter(None, (record.notices, note)))

    def _unchanged(self, row: Row, stat: os.stat_result, keys: tuple[str, str]) -> bool:
        """Same input file (size and mtime), model and settings as the row records. A row of
        a ledger from before resolved keys matches on the settings as asked for: an archive's
        finished files are not all redone because the ledger's key format changed."""
        return (
            (row.input_size, row.input_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
            and row.model_sha256 == self.colouriser.sha256
            and row.settings in keys
        )

    def _key(self, item: Item, resolved: bool = True) -> str:
        """The settings key of one file: the batch's, and its keyframes' content if it has a
        sidecar folder (an unreadable one keys on its listing; colourising then says why)."""
        folder = sidecar(item.src)
        if not folder.is_dir():
            return self.settings.key(resolved=resolved)
        try:
            digest = keyframes_digest(find_keyframes(folder))
        except (VidcolourError, OSError):
            digest = "unreadable: " + ",".join(sorted(os.listdir(folder)))
        return self.settings.key(digest, resolved)

    def _colourise(
        self,
        item: Item,
        stat: os.stat_result,
        before: Row | None,
        record: Row,
        events: Events,
        ledger: Ledger,
    ) -> str | None:
        """Fill ``record`` with the outcome for a claimed file; returns a note on a done one
        that needed no colourising."""
        ours = before is not None and before.output == record.output
        if item.dst.exists() and not ours and not self.options.overwrite:
            record.status = "skipped"
            record.error = "its output exists and was not made by this batch (--overwrite)"
            return None
        record.input_size, record.input_mtime_ns = stat.st_size, stat.st_mtime_ns
        clock = time.perf_counter()
        try:
            record.input_sha256 = self._hash(item, item.src, "input", stat.st_size, events)
        except OSError as exc:
            record.error = _read_error(exc)
            return None
        record.hash_seconds = time.perf_counter() - clock
        if (
            before is not None
            and before.status == "done"
            and (before.input_sha256, before.model_sha256, before.settings)
            == (record.input_sha256, record.model_sha256, record.settings)
            and _output_intact(self.plan.dst_dir, before)
        ):  # touched, not changed: keep the output and its figures, note the new mtime
            for name in _RESULT_COLUMNS:
                setattr(record, name, getattr(before, name))
            record.status = "done"
            return "input touched, content unchanged: output kept"
        options = replace(self.options, overwrite=self.options.overwrite or ours)
        item.dst.parent.mkdir(parents=True, exist_ok=True)

        def progress(done: int, expected: int | None) -> None:
            if self.stop.is_set():
                raise Cancelled
            events.frames(item, done, expected)

        events.started(item)
        note = None
        if is_image(item.src):
            self._colourise_still(item, options, record)
        else:
            note = self._colourise_video(item, options, record, progress, ledger)
        after = item.src.stat()
        if (after.st_size, after.st_mtime_ns) != (record.input_size, record.input_mtime_ns):
            item.dst.unlink(missing_ok=True)
            raise VidcolourError("the input changed while it was being read")
        record.output_size = item.dst.stat().st_size
        record.output_sha256 = self._hash(item, item.dst, "output", record.output_size, events)
        record.status, record.error = "done", None
        return note

    def _hash(self, item: Item, path: Path, what: str, size: int, events: Events) -> str:
        """``file_sha256`` that shows its progress and stops between blocks when the batch
        is asked to: hashing a 100 GB master takes minutes, longer than Slurm waits after
        SIGTERM (``--signal=TERM@120``) before it kills."""

        def progress(done: int) -> None:
            self._check_stop()
            events.hashing(item, what, done, size)

        return file_sha256(path, progress)

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise Cancelled

    def _colourise_still(self, item: Item, options: VideoOptions, record: Row) -> None:
        """As ``vidcolour run`` does: size, lightness, transparency, precision and metadata
        kept where the format holds them; what is not, and any colour already there, go into
        the record's notices."""
        notices: list[str] = []
        clock = time.perf_counter()
        size = colourise_image_file(
            self.colouriser, item.src, item.dst, options.overwrite, notices.append
        )
        record.frames, record.colourise_seconds = 1, time.perf_counter() - clock
        record.notices = "; ".join(notices).replace(str(item.src), item.rel) or None
        clock = time.perf_counter()
        try:
            with Image.open(item.dst) as image:
                found = image.size
                record.colourfulness = _image_colourfulness(image)
        except OSError as exc:
            item.dst.unlink(missing_ok=True)
            raise VidcolourError(f"output check failed: cannot read it back ({exc})") from None
        record.verify_seconds = time.perf_counter() - clock
        if found != size:
            item.dst.unlink(missing_ok=True)
            raise VidcolourError(f"output check failed: {size} written, {found} read back")

    def _colourise_video(
        self, item: Item, options: VideoOptions, record: Row, progress: Progress, ledger: Ledger
    ) -> str | None:
        """A film is made in segments, going on from those a killed run finished; they stay
        until the ledger records the output (``_process``). The record's time and fps are
        this run's, for the frames it colourised; ``frames`` counts them all, so a film that
        went on from segments says how many were not colourised now (its returned note, for
        the log line, and a notice, for the report)."""
        checks = TemporalChecks()
        if sidecar(item.src).is_dir():
            options = replace(options, keyframes=find_keyframes(sidecar(item.src)))

        def segment(finished: int, frames: int) -> None:
            record.segments = finished
            ledger.segments(item.rel, finished)

        report = colourise_video(
            self.colouriser,
            item.src,
            item.dst,
            replace(options, resume=bool(options.segment_seconds)),
            progress,
            None,
            checks,
            on_segment=segment,
            keep_work=True,
        )
        record.colourise_seconds = report.seconds
        record.frames, record.fps = report.frames, report.fps
        record.expected_frames = report.expected_frames
        record.colourfulness, record.cdc = checks.colourfulness, checks.cdc
        damaged = report.stats.bad_packets + report.stats.corrupt_frames
        record.decode_error_share = damaged / max(1, report.frames + report.stats.bad_packets)
        notices = list(report.notices)
        if report.read_error:
            notices.append(f"reading stopped early: {report.read_error}")
        if report.cut_short:
            notices.append(f"short: {report.cut_short}")
        note = None
        if report.resumed_frames:
            earlier = f"{report.resumed_frames} of them from an earlier run's segments"
            notices.append(f"{earlier}, not in its time and fps")
            note = f"{plural(report.frames, 'frame')} in {report.seconds:.1f} s, {earlier}"
        record.notices = "; ".join(notices) or None
        clock = time.perf_counter()
        found, record.duration = verify_video(item.dst, self._check_stop)
        record.verify_seconds = time.perf_counter() - clock
        if found != report.frames:
            item.dst.unlink(missing_ok=True)
            raise VidcolourError(
                f"output check failed: {report.frames} frames written, {found} read back"
            )
        return note


_LOOKS = 5  # times a file's record is read again after another process changed it
_RESULT_COLUMNS = (
    "output_size",
    "output_sha256",
    "colourise_seconds",
    "verify_seconds",
    "frames",
    "expected_frames",
    "duration",
    "fps",
    "colourfulness",
    "cdc",
    "decode_error_share",
    "notices",
)


def verify_video(path: Path, check: Callable[[], None] | None = None) -> tuple[int, float | None]:
    """(video frames, duration in seconds) of a written file, read back by demuxing it.
    ``check`` is called every 256 packets: it may raise to stop a long read."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        count, first, end = 0, None, None
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            count += 1
            if check is not None and count % 256 == 0:
                check()
            if packet.pts is not None:
                first = packet.pts if first is None else min(first, packet.pts)
                stop = packet.pts + (packet.duration or 0)
                end = stop if end is None else max(end, stop)
        if first is None or end is None or stream.time_base is None:
            return count, None
        return count, float((end - first) * stream.time_base)


def _give_back(ledger: Ledger, rel: str, before: Row | None) -> None:
    """Release a claim on the way out of a stopped file. A ledger that has just failed (its
    disk full) may refuse this too: the error that stops the batch is the first one, and the
    claim is then taken back by the next run, as a dead process's."""
    with contextlib.suppress(LedgerError):
        ledger.release(rel, before)


def _deleted(src: Path) -> bool:
    """The input is gone from a folder still there (not a whole mount gone for a while)."""
    return src.parent.is_dir() and not os.path.lexists(src)


def _output_intact(dst_dir: Path, row: Row) -> bool:
    if not row.output:
        return False
    try:
        return (dst_dir / row.output).stat().st_size == row.output_size
    except OSError:
        return False


def _image_colourfulness(image: Image.Image) -> float:
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    return float(colourfulness(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0])


def _read_error(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "the file disappeared before it could be read"
    return f"cannot read it: {exc.strerror or exc}"


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, VidcolourError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"unexpected {type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")
