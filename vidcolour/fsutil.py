"""Filesystem helpers: outputs appear whole or not at all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` if the block succeeds.

    The temp file is in the same directory, so the final ``os.replace`` is atomic: a reader
    (or a crash at any moment) sees either the old file, or no file, or the complete new one.
    On any exception, KeyboardInterrupt included, the temp file is removed.
    """
    dest = Path(dest)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # on disk before it gets the name: survives power loss too
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
