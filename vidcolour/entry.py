"""The ``vidcolour`` command: the click group of vidcolour/cli.py behind a guard for Ctrl-C
while torch is still importing (seconds on a cold start), which would otherwise end in a
KeyboardInterrupt traceback tens of lines long."""

from __future__ import annotations

import sys

INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def main() -> None:
    try:
        from vidcolour.cli import main as cli
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None
    cli()
