"""What long jobs show while they run, on a terminal and in a log file.

On a terminal: rich's live bars. Anywhere else (nohup, Slurm, a systemd unit, ``2> log``): no
bars, which would write nothing until the end, but a plain line at every tenth of the work and
at least every ``PLAIN_EVERY_S`` seconds, with the count, the rate and the ETA. Text is never
wrapped by the tool where there is no terminal: a log line stays one line, YAML stays YAML.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import IO

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

PLAIN_EVERY_S = 30.0  # longest silence in a log file
PLAIN_STEPS = 10  # a line at every tenth of a job whose size is known
NO_WRAP_WIDTH = 100_000  # tables are laid out at their natural width, never cut to 80

Update = Callable[[int, int | None], None]  # (units done, units expected or None)


def make_console(stderr: bool = True, file: IO[str] | None = None) -> Console:
    """A rich console for stderr (or stdout): the terminal's width and wrapping on a terminal;
    elsewhere no wrapping at all, so that each line the tool prints is one line in the log."""
    console = Console(stderr=stderr, file=file)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, file=file, width=NO_WRAP_WIDTH, soft_wrap=True)


def say(console: Console, line: str) -> None:
    """Print ``line`` as it is: no markup, no highlighting."""
    console.print(line, markup=False, highlight=False)


def duration(seconds: float) -> str:
    """``0:03:41`` for 221 s."""
    return str(timedelta(seconds=max(0, round(seconds))))


def falls_short(frames: int | None, expected: int | None) -> bool:
    """Fewer frames than the container announces (by more than 1%, since the announced count
    is often an estimate from the duration): a file cut short, or one that stopped decoding."""
    if frames is None or not expected:
        return False
    return frames < 0.99 * expected - 1


def plural(count: int, noun: str) -> str:
    """``1 frame``, ``2 frames``, ``0 shots``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class Rate:
    """Units per second since the first count it was given: a job that resumes (a film's
    finished segments, video/segments.py) starts its count above 0, and those units were
    done by an earlier run, not at the speed of this one."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.base: int | None = None
        self.start = clock()

    def __call__(self, done: int) -> float:
        now = self.clock()
        if self.base is None:
            self.base, self.start = done, now
        return (done - self.base) / max(now - self.start, 1e-9)


class PlainMeter:
    """Progress as plain lines, for logs: one when another tenth of the total is done and one
    at least every ``every_s`` seconds (for jobs of unknown size, only those). The first update
    gives the count the job starts from (0, or what an earlier run did)."""

    def __init__(
        self,
        say: Callable[[str], None],
        label: str,
        unit: str = "frames",
        every_s: float = PLAIN_EVERY_S,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.say = say
        self.label = label
        self.unit = unit
        self.every_s = every_s
        self.clock = clock
        self.start = clock()
        self.last_line = self.start
        self.last_step: int | None = None
        self.rate = Rate(clock)

    def update(self, done: int, expected: int | None) -> None:
        now = self.clock()
        rate = self.rate(done)
        total = max(expected, done) if expected else None
        step = done * PLAIN_STEPS // total if total else 0
        if self.last_step is None:  # the count it starts from
            self.last_step = step
            return
        if step <= self.last_step and now - self.last_line < self.every_s:
            return
        if total is not None and done >= total:
            return  # the job's own summary line says it is done
        self.last_step, self.last_line = max(step, self.last_step), now
        self.say(self.line(done, total, now - self.start, rate))

    def line(self, done: int, total: int | None, elapsed: float, rate: float) -> str:
        count = (
            f"{done}/{total} {self.unit} ({100 * done / total:.0f}%)"
            if total
            else (f"{done} {self.unit}")
        )
        parts = [f"{self.label}: {count}", f"{rate:.1f} {self.unit}/s", f"{duration(elapsed)} in"]
        if total and rate > 0:
            parts.append(f"ETA {duration((total - done) / rate)}")
        return ", ".join(parts)


@contextmanager
def meter(console: Console, label: str, unit: str = "frames") -> Iterator[Update]:
    """Progress of one job, fed by calling what this yields with (done, expected or None):
    a transient bar with count, rate, elapsed time and ETA on a terminal, plain lines
    (``PlainMeter``) elsewhere."""
    if not console.is_terminal:
        yield PlainMeter(lambda line: say(console, line), label, unit).update
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} " + ("fps" if unit == "frames" else f"{unit}/s")),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task: TaskID | None = None
        rate = Rate()

        def update(done: int, expected: int | None) -> None:
            nonlocal task
            speed = rate(done)
            total = max(expected, done) if expected else None
            if task is None:  # from the count it starts at: a resumed job's ETA is its own
                task = progress.add_task(label, total=total, completed=done, rate=0.0)
            progress.update(task, completed=done, total=total, rate=speed)

        yield update
