"""Filesystem helpers: outputs are checked before they are written and appear whole or not at
all; files are identified by their hash."""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vidcolour.errors import DiskFullError, VidcolourError

# mkstemp creates files readable by their owner only; a finished output should get the mode any
# new file would (0666 less the umask). The umask can only be read by setting it, so read it once
# at import, before any threads exist.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` if the block succeeds.

    The temp file is in the same directory, so the final ``os.replace`` is atomic: a reader
    (or a crash at any moment) sees either the old file, or no file, or the complete new one.
    On any exception, KeyboardInterrupt included, the temp file is removed.
    """
    dest = Path(dest)
    try:
        fd, name = tempfile.mkstemp(prefix=_temp_prefix(dest), suffix=".tmp", dir=dest.parent)
    except OSError as exc:  # the folder is missing, read-only or full
        raise write_error(dest, exc) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        try:
            with open(tmp, "rb+") as f:  # on disk before it gets the name: survives power loss
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_UMASK)  # after the writer: some (safetensors) replace it
            os.replace(tmp, dest)
        except OSError as exc:
            raise write_error(dest, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_temps(dst: Path) -> None:
    """Delete temp files an earlier, killed attempt at ``dst`` left (``atomic_path``'s
    names). Only called by the holder of ``dst``'s claim (a batch's, or a `run --resume`), so
    no live writer owns them."""
    if dst.parent.is_dir():
        for temp in dst.parent.glob(f"{_glob_escape(_temp_prefix(dst))}*.tmp"):
            temp.unlink(missing_ok=True)


NAME_MAX = 255  # bytes in one file name, on Linux's filesystems


def short_name(name: str, room: int) -> str:
    """``name``, or a shorter one that still tells it apart where ``room`` more bytes around
    it would pass NAME_MAX: its start and a hash of the whole. The names of an output's temp
    file and work folder (a few bytes longer than it) then fit wherever the output's own does:
    a Japanese title of 80 characters is 240 bytes."""
    raw = os.fsencode(name)
    if len(raw) + room <= NAME_MAX:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:16]
    head = raw[: NAME_MAX - room - len(digest) - 1].decode("utf-8", "ignore")  # whole characters
    return f"{head}~{digest}"


def _temp_prefix(dest: Path) -> str:
    return f".{short_name(dest.name, 14)}."  # mkstemp adds 8 characters, then ".tmp"


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def check_destination(src: Path, dst: Path, overwrite: bool) -> None:
    """Refuse outputs that would destroy the input, clobber a file or cannot be written."""
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise VidcolourError(f"output {dst} is the input; choose another name")
    if dst.is_dir():
        raise VidcolourError(f"output {dst} is a directory")
    if dst.exists() and not overwrite:
        raise VidcolourError(f"{dst} exists (use --overwrite to replace it)")
    check_writable_folder(dst.parent, "output directory")


def check_writable_folder(folder: Path, what: str) -> None:
    """``folder`` exists and new files can be made in it (a read-only mount is not writable,
    even for root); else an error naming it as ``what``."""
    if folder.exists() and not folder.is_dir():
        raise VidcolourError(f"{what} {folder} is a file, not a folder")
    if not folder.is_dir():
        raise VidcolourError(f"{what} {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise VidcolourError(f"{what} {folder} is not writable")


def write_error(dst: Path, exc: BaseException) -> VidcolourError:
    """The user-facing error for an output that could not be written."""
    code = getattr(exc, "errno", None)
    reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
    if code in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"cannot write {dst}: the disk is full")
    if code == errno.EFBIG:
        reason = "file size limit reached"
    if code == errno.ENOSYS and "avcodec_open2" in str(exc):  # FFV1 at 1 pixel wide, say
        reason = "its encoder cannot code pictures of this size and format; choose another --codec"
    return VidcolourError(f"cannot write {dst}: {reason}")


def file_sha256(path: Path, progress: Callable[[int], None] | None = None) -> str:
    """The SHA-256 of a file's bytes, as hex. ``progress`` is called with the bytes read so
    far after every block (1 MiB): an archive master of 100 GB takes minutes, during which
    a caller shows progress and may stop (by raising from it)."""
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done)
    return digest.hexdigest()
