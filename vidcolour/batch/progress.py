"""What a running batch shows: a line per settled file (for logs, with files done / total and
the overall ETA) and, on a terminal, live bars for the whole job and each file in hand; in a log
file, plain progress lines for each file in hand instead (vidcolour/progress.py).

The overall ETA is by input bytes: colourising time grows with a file's size far more than with
its count. Files settled without work (already done, left failed, skipped) leave the total
instead of counting as progress, so they do not make the rate look faster than it is.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from vidcolour.batch.plan import Item, readable
from vidcolour.batch.runner import Outcome
from vidcolour.progress import PlainMeter, Rate, say

_WORKLESS = (Outcome.ALREADY_DONE, Outcome.LEFT_FAILED, Outcome.SKIPPED, Outcome.BUSY)


class BatchProgress:
    """The ``Events`` of a batch, shown on ``console``. Use as a context manager."""

    def __init__(self, console: Console, items: list[Item]) -> None:
        self.console = console
        self.total_files = len(items)
        self.settled = 0
        self._sizes = {item.rel: _size(item) for item in items}
        self._remaining_bytes = sum(self._sizes.values())
        self._done_bytes = 0
        self._first_start: float | None = None  # when the first file that needed work began
        self._tasks: dict[str, tuple[TaskID, Rate]] = {}
        self._plain: dict[str, PlainMeter] = {}  # files in hand, when not on a terminal
        # a file being hashed: (what, its bar or its plain meter); MiB, not bytes, for counts
        # a reader takes in at a glance
        self._hashes: dict[str, tuple[str, TaskID | PlainMeter]] = {}
        self._lock = threading.Lock()
        self._bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,  # a disabled bar writes nothing, not even a newline
        )
        self._overall = self._bars.add_task(
            f"files 0/{self.total_files}", total=self._remaining_bytes or 1, rate=""
        )

    def __enter__(self) -> BatchProgress:
        self._bars.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.__exit__(None, None, None)

    # ------------------------------------------------------------------------------ events
    def hashing(self, item: Item, what: str, done: int, total: int) -> None:
        with self._lock:
            held = self._hashes.get(item.rel)
            if held is None or held[0] != what:
                self._end_hash(item)
                label = f"{readable(item.rel)} (hashing the {what})"
                meter: TaskID | PlainMeter
                if self.console.is_terminal:
                    meter = self._bars.add_task(label, total=max(1, total >> 20), rate="")
                else:
                    meter = PlainMeter(lambda line: say(self.console, line), label, unit="MiB")
                held = self._hashes[item.rel] = (what, meter)
            meter = held[1]
            if isinstance(meter, PlainMeter):
                meter.update(done >> 20, total >> 20)
            else:
                self._bars.update(meter, completed=done >> 20)

    def _end_hash(self, item: Item) -> None:
        held = self._hashes.pop(item.rel, None)
        if held is not None and not isinstance(held[1], PlainMeter):
            self._bars.remove_task(held[1])

    def started(self, item: Item) -> None:
        with self._lock:
            self._end_hash(item)
            task = self._bars.add_task(readable(item.rel), total=None, rate="")
            self._tasks[item.rel] = (task, Rate())
            if self._first_start is None:
                self._first_start = time.perf_counter()
            if not self.console.is_terminal:
                self._plain[item.rel] = PlainMeter(
                    lambda line: say(self.console, line), readable(item.rel)
                )

    def frames(self, item: Item, done: int, expected: int | None) -> None:
        with self._lock:
            task, rate = self._tasks[item.rel]
            first = rate.base is None
            fps = rate(done)
            total = max(expected, done) if expected else None
            if first:  # the count it starts from: a resumed film's finished segments
                self._bars.reset(task, total=total, completed=done)
            self._bars.update(task, completed=done, total=total, rate=f"{fps:.1f} fps")
            share = done / total if total else 0.0
            self._bars.update(
                self._overall, completed=self._done_bytes + share * self._sizes[item.rel]
            )
            if item.rel in self._plain:
                self._plain[item.rel].update(done, expected)

    def finished(self, item: Item, outcome: Outcome, message: str) -> None:
        with self._lock:
            self.settled += 1
            size = self._sizes[item.rel]
            if item.rel in self._tasks:
                self._bars.remove_task(self._tasks.pop(item.rel)[0])
            self._plain.pop(item.rel, None)
            self._end_hash(item)
            self._remaining_bytes -= size
            if outcome not in _WORKLESS:
                self._done_bytes += size
            self._bars.update(
                self._overall,
                description=f"files {self.settled}/{self.total_files}",
                completed=self._done_bytes,
                total=max(1, self._done_bytes + self._remaining_bytes),
            )
            eta = self._eta()
            self.console.print(
                f"[{self.settled}/{self.total_files}] {readable(item.rel)}: {outcome.value}"
                f"{'' if message == outcome.value else f' ({readable(message)})'}"
                f"{f'; batch ETA {eta}' if eta else ''}",
                highlight=False,
                markup=False,
            )

    def _eta(self) -> str | None:
        if not self._done_bytes or not self._remaining_bytes or self._first_start is None:
            return None
        worked = time.perf_counter() - self._first_start  # wall time: right for any --jobs
        seconds = worked / self._done_bytes * self._remaining_bytes
        return str(timedelta(seconds=round(seconds)))


def _size(item: Item) -> int:
    try:
        return item.src.stat().st_size
    except OSError:
        return 0
