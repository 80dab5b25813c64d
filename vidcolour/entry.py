"""The ``vidcolour`` command: the click group of vidcolour/cli.py behind a guard for Ctrl-C
while torch is still importing (seconds on a cold start), which would otherwise end in a
KeyboardInterrupt traceback tens of lines long, or be swallowed by an import that catches
everything and let the command run on."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

from vidcolour.errors import INTERRUPTED


def _interrupted_while_loading(signum: int, frame: FrameType | None) -> None:
    print("Error: interrupted", file=sys.stderr, flush=True)
    os._exit(INTERRUPTED)  # nothing is written yet; nothing to clean up


def main() -> None:
    signal.signal(signal.SIGINT, _interrupted_while_loading)
    from vidcolour.cli import main as cli

    signal.signal(signal.SIGINT, signal.default_int_handler)  # commands handle Ctrl-C themselves
    cli()
