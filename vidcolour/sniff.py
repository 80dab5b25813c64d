"""What a model file is, read from its first bytes rather than its name.

A ``.pt`` name proves nothing: ``export -o mine.pt`` used to write safetensors under it, and
torch then failed on it with advice to unpickle it unchecked. Both formats have a signature:

- safetensors: an 8-byte little-endian header length, then that many bytes of JSON (``{``).
- torch.save: a zip archive (``PK``) since torch 1.6; before that a pickle (``0x80``, protocol).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Kind = Literal["safetensors", "torch"]
_MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header


def model_file_kind(path: Path) -> Kind | None:
    """``"safetensors"``, ``"torch"`` (a torch.save file), or None for anything else (too short,
    text, an image, ...). ``path`` must be a readable file."""
    with path.open("rb") as f:
        head = f.read(9)
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return "torch"
    if len(head) == 9 and head[8:9] == b"{":
        size = int.from_bytes(head[:8], "little")
        if 0 < size <= min(_MAX_HEADER, path.stat().st_size - 8):
            return "safetensors"
    return None


def describe(path: Path) -> str:
    """Why a file that is neither format is neither, for an error message."""
    with path.open("rb") as f:
        head = f.read(64)
    if not head:
        return "it is empty"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "its first bytes match neither format"
    return "it is text"
