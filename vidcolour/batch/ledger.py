"""The batch ledger: one SQLite database in DST_DIR that says what happened to every file.

Every change is one short transaction, so a process killed at any moment leaves the database
as it was before or after that change (SQLite's journal), and several processes (the shards of
one job) share it through SQLite's file locks; a writer that finds the database locked waits up
to ``BUSY_TIMEOUT_S``. Files a process is working on are ``running`` and carry its owner id and a
heartbeat; a claim whose owner has died (same host, no such process) or stopped beating
(another host) is taken back by the next process that looks. docs/BATCH.md has the schema.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from vidcolour.errors import VidcolourError

LEDGER_NAME = "vidcolour-ledger.sqlite"
SCHEMA_VERSION = 2  # 2 added files.segments
BUSY_TIMEOUT_S = 120.0
HEARTBEAT_S = 20.0
STALE_S = 300.0  # a claim from another host whose heartbeat is older than this is dead
STATUSES = ("pending", "running", "done", "failed", "skipped")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    rel TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    error TEXT,
    input_size INTEGER,
    input_mtime_ns INTEGER,
    input_sha256 TEXT,
    output TEXT,
    output_size INTEGER,
    output_sha256 TEXT,
    model_sha256 TEXT,
    settings TEXT,
    owner TEXT,
    heartbeat REAL,
    shard TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    started REAL,
    finished REAL,
    hash_seconds REAL,
    colourise_seconds REAL,
    verify_seconds REAL,
    frames INTEGER,
    expected_frames INTEGER,
    duration REAL,
    fps REAL,
    colourfulness REAL,
    cdc REAL,
    decode_error_share REAL,
    notices TEXT,
    segments INTEGER
);
"""


@dataclass
class Row:
    """One file's record. Times are Unix seconds; durations seconds; sizes bytes."""

    rel: str
    status: str
    error: str | None = None
    input_size: int | None = None
    input_mtime_ns: int | None = None
    input_sha256: str | None = None
    output: str | None = None  # relative to DST_DIR
    output_size: int | None = None
    output_sha256: str | None = None
    model_sha256: str | None = None
    settings: str | None = None  # JSON of the options that shape the output
    owner: str | None = None  # host:pid:token of the process that holds a running claim
    heartbeat: float | None = None
    shard: str | None = None
    attempts: int = 0
    started: float | None = None
    finished: float | None = None
    hash_seconds: float | None = None
    colourise_seconds: float | None = None
    verify_seconds: float | None = None
    frames: int | None = None
    expected_frames: int | None = None  # what the input's container announces, if anything
    duration: float | None = None  # of the output video, seconds
    fps: float | None = None  # frames per second of processing
    colourfulness: float | None = None
    cdc: float | None = None
    decode_error_share: float | None = None
    notices: str | None = None
    segments: int | None = None  # finished segments of a film made in them (video/segments.py)


COLUMNS = tuple(f.name for f in fields(Row))


class LedgerError(VidcolourError):
    """The ledger cannot be read or written (damaged, read-only, its disk full, locked for
    longer than ``BUSY_TIMEOUT_S``): every file would fail the same way, so a batch stops."""


_PATHS = ("rel", "output")  # stored losslessly: they name files on disk


def _stored(column: str, value: Any) -> Any:
    """A value as the ledger holds it. A path that is not valid UTF-8 (a Latin-1 name from an
    old tape, which Python reads with surrogate escapes) is stored as its bytes, a BLOB, so it
    is kept exactly and every valid name stays the TEXT older ledgers hold; other text keeps
    what can be shown (U+FFFD for the bytes that are not UTF-8)."""
    if not isinstance(value, str):
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogateescape")
        return raw if column in _PATHS else raw.decode("utf-8", "replace")
    return value


def _row(values: tuple[Any, ...]) -> Row:
    """A row as read: paths stored as bytes back to the str Python names the file with."""
    row = Row(*values)
    for column in _PATHS:
        value = getattr(row, column)
        if isinstance(value, bytes):
            setattr(row, column, value.decode("utf-8", "surrogateescape"))
    return row


# The claims this process made. A claim with this process's host and pid but another token
# was made by an earlier process that had the same pid: a container restarted after a crash
# (its batch is pid 1 each time), whose claims would otherwise look alive for STALE_S.
_OURS: set[str] = set()


def new_owner() -> str:
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    _OURS.add(owner)
    return owner


def owner_alive(owner: str | None, heartbeat: float | None, now: float | None = None) -> bool:
    """Whether the process that wrote a running claim may still be working on it."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    fresh = heartbeat is not None and (now or time.time()) - heartbeat < STALE_S
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid() and owner not in _OURS:
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # exists, someone else's
        return fresh  # a live pid with a stale heartbeat is a reused pid
    return fresh


class Ledger:
    """The ledger of one output directory. Safe to use from several threads and processes."""

    def __init__(self, dst_dir: Path) -> None:
        self.path = dst_dir / LEDGER_NAME
        self.owner = new_owner()
        with self._transaction() as db:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)  # not executescript: that commits first
            version = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if version is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif version[0] == "1":  # an archive's ledger from before segments: kept
                db.execute("ALTER TABLE files ADD COLUMN segments INTEGER")
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", ("2",))
            elif version[0] != str(SCHEMA_VERSION):
                raise VidcolourError(
                    f"{self.path} has ledger schema {version[0]}, this vidcolour reads "
                    f"{SCHEMA_VERSION}"
                )
        self._beat_stop = threading.Event()
        self._beat: threading.Thread | None = None

    @contextlib.contextmanager
    def _connection(
        self, isolation_level: Literal["DEFERRED"] | None = "DEFERRED"
    ) -> Iterator[sqlite3.Connection]:
        """A connection to the ledger. Any SQLite error on it, at open or later (a damaged
        page is only found when a statement reads it; a read-only file only when one writes),
        is a ``LedgerError``: one line, never a traceback."""
        try:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=isolation_level)
            try:
                yield db
            finally:
                db.close()
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path} is not a usable ledger ({exc})") from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: takes the write lock at once, so two
        processes never both read a row as free and then both claim it)."""
        with self._connection(None) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                # SQLite has already rolled back after some errors (a full disk): a ROLLBACK
                # then fails with "no transaction is active", which would hide the cause.
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the ledger's write lock for the block: other processes' writes wait (up to
        ``BUSY_TIMEOUT_S``), reads go on. For work on DST_DIR that one process at a time must
        do (the reports)."""
        with self._transaction():
            yield

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Row]:
        with self._connection() as db:
            cursor = db.execute(f"SELECT {', '.join(COLUMNS)} FROM files {sql}", args)
            return [_row(values) for values in cursor.fetchall()]

    # --------------------------------------------------------------------------- reading
    def get(self, rel: str) -> Row | None:
        rows = self._read("WHERE rel = ?", (_stored("rel", rel),))
        return rows[0] if rows else None

    def rows(self) -> list[Row]:
        """Every row, by path (sorted here: SQLite puts the BLOBs of names that are not UTF-8
        after all text)."""
        return sorted(self._read(""), key=lambda row: row.rel.encode("utf-8", "surrogateescape"))

    def meta(self) -> dict[str, str]:
        with self._connection() as db:
            return {
                key: value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
                for key, value in db.execute("SELECT key, value FROM meta").fetchall()
            }

    def set_meta(self, values: dict[str, str]) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                ((key, _stored("rel", value)) for key, value in values.items()),
            )

    # --------------------------------------------------------------------------- claims
    def add_pending(self, rels: Iterable[str], shard: str) -> None:
        """Record files a batch is about to work on and has no record of as ``pending``, so
        that a batch stopped before reaching them still lists them (``vidcolour report``)."""
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO files (rel, status, shard) VALUES (?, 'pending', ?)",
                ((_stored("rel", rel), shard) for rel in rels),
            )

    def claim(self, rel: str, output: str, shard: str, seen: Row | None) -> tuple[str, Row | None]:
        """Mark ``rel`` as being worked on by this process, if its record is still ``seen``
        (what the caller decided on). Returns (outcome, the record before): "claimed"; "busy"
        when another live process holds it; "changed" when another process wrote it since
        (look again: it may be done now)."""
        now = time.time()
        with self._transaction() as db:
            before = _fetch(db, rel)
            if (
                before is not None
                and before.status == "running"
                and before.owner != self.owner
                and owner_alive(before.owner, before.heartbeat, now)
            ):
                return "busy", before
            if _version(before) != _version(seen):
                return "changed", before
            attempts = (before.attempts if before else 0) + 1
            db.execute(
                "INSERT INTO files (rel, status, output, owner, heartbeat, shard, attempts, "
                "started) VALUES (?, 'running', ?, ?, ?, ?, ?, ?) ON CONFLICT (rel) DO UPDATE SET "
                "status = 'running', output = excluded.output, owner = excluded.owner, "
                "heartbeat = excluded.heartbeat, shard = excluded.shard, "
                "attempts = excluded.attempts, started = excluded.started",
                (
                    _stored("rel", rel),
                    _stored("output", output),
                    self.owner,
                    now,
                    shard,
                    attempts,
                    now,
                ),
            )
            return "claimed", before

    def finish(self, row: Row) -> None:
        """Write the outcome of a claimed file (status done, failed or skipped), if this
        process still holds the claim."""
        assert row.status in ("done", "failed", "skipped"), row.status
        row.owner, row.heartbeat, row.finished = None, None, time.time()
        values = {c: _stored(c, getattr(row, c)) for c in COLUMNS if c != "rel"}
        rel = _stored("rel", row.rel)
        with self._transaction() as db:
            holder = db.execute("SELECT owner FROM files WHERE rel = ?", (rel,)).fetchone()
            if holder is not None and holder[0] not in (None, self.owner):
                return  # taken back from us (we were presumed dead); the new owner decides
            db.execute(
                f"UPDATE files SET {', '.join(f'{c} = ?' for c in values)} WHERE rel = ?",
                (*values.values(), rel),
            )

    def record(self, row: Row) -> None:
        """Write an outcome for a file nobody has claimed (skipped before any work)."""
        values = {c: _stored(c, getattr(row, c)) for c in COLUMNS}
        with self._transaction() as db:
            current = _fetch(db, row.rel)
            if (
                current is not None
                and current.status == "running"
                and owner_alive(current.owner, current.heartbeat)
            ):
                return
            db.execute(
                f"INSERT OR REPLACE INTO files ({', '.join(values)}) "
                f"VALUES ({', '.join('?' * len(values))})",
                tuple(values.values()),
            )

    def segments(self, rel: str, finished: int) -> None:
        """How many segments of the film in hand are finished (while this process holds it)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE files SET segments = ? WHERE rel = ? AND owner = ?",
                (finished, _stored("rel", rel), self.owner),
            )

    def release(self, rel: str, before: Row | None) -> None:
        """Give a claim back unfinished (interrupted, or stopped by a ledger write that
        failed): the file's record is what it was, but for its finished segments, which the
        next run goes on from, and, where it recorded none, the claim's output, which may be
        in place already (stopped after the rename): the next run then knows it as its own."""
        with self._transaction() as db:
            current = _fetch(db, rel)
            if current is None or current.owner != self.owner:
                return
            kept = before or Row(rel, "pending", shard=current.shard)
            values = {c: _stored(c, getattr(kept, c)) for c in COLUMNS}
            values["segments"] = current.segments
            if kept.output is None:
                values["output"] = _stored("output", current.output)
            db.execute(
                f"INSERT OR REPLACE INTO files ({', '.join(values)}) "
                f"VALUES ({', '.join('?' * len(values))})",
                tuple(values.values()),
            )

    def dead_claims(self) -> list[Row]:
        """Running rows whose process is gone (killed, crashed, its machine lost)."""
        now = time.time()
        return [
            row
            for row in self._read("WHERE status = 'running'")
            if row.owner != self.owner and not owner_alive(row.owner, row.heartbeat, now)
        ]

    def reset_dead(self, row: Row, reason: str) -> bool:
        """Turn a dead claim into ``pending`` (if it is still the same dead claim)."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE files SET status = 'pending', owner = NULL, heartbeat = NULL, error = ? "
                "WHERE rel = ? AND status = 'running' AND owner IS ?",
                (reason, _stored("rel", row.rel), row.owner),
            )
            return cursor.rowcount == 1

    # --------------------------------------------------------------------------- heartbeat
    def start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._beat_stop.wait(HEARTBEAT_S):
                with contextlib.suppress(LedgerError), self._transaction() as db:
                    db.execute(
                        "UPDATE files SET heartbeat = ? WHERE owner = ? AND status = 'running'",
                        (time.time(), self.owner),
                    )

        self._beat = threading.Thread(target=beat, name="vidcolour-heartbeat", daemon=True)
        self._beat.start()

    def stop_heartbeat(self) -> None:
        self._beat_stop.set()
        if self._beat is not None:
            self._beat.join()

    def integrity(self) -> str:
        with self._connection() as db:
            return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def open_existing(dst_dir: Path) -> Ledger:
    """The ledger of a directory a batch has written to (an error if there is none)."""
    if not (dst_dir / LEDGER_NAME).is_file():
        raise VidcolourError(f"{dst_dir} has no {LEDGER_NAME}: not a vidcolour batch output")
    return Ledger(dst_dir)


def _fetch(db: sqlite3.Connection, rel: str) -> Row | None:
    values = db.execute(
        f"SELECT {', '.join(COLUMNS)} FROM files WHERE rel = ?", (_stored("rel", rel),)
    ).fetchone()
    return _row(values) if values else None


def _version(row: Row | None) -> tuple[object, ...] | None:
    """What changes whenever a process writes a file's record."""
    return None if row is None else (row.status, row.attempts, row.owner, row.finished)
