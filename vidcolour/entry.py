"""The ``vidcolour`` command: the click group of vidcolour/cli.py behind a guard for Ctrl-C
while torch is still importing (seconds on a cold start), which would otherwise end in a
KeyboardInterrupt traceback tens of lines long, or be swallowed by an import that catches
everything and let the command run on. SIGTERM (what Slurm, Kubernetes and ``kill`` send)
ends the process with the same line and exit status until a command handles it itself (``run``
and ``batch`` stop cleanly): while torch imports and the model loads nothing is written yet,
and exit 130 is what the docs promise for it, not death by the signal (143)."""

from __future__ import annotations

import os
import signal
from types import FrameType

from vidcolour.errors import INTERRUPTED

_PID = os.getpid()


def _interrupted_while_loading(signum: int, frame: FrameType | None) -> None:
    if os.getpid() != _PID:  # a forked helper (a data loader's worker): ended as before
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    os.write(2, b"Error: interrupted\n")  # not print: the signal may land in a write to stderr
    # Nothing is written yet (or, SIGTERM in a command that does not handle it, left as the
    # signal's own default would leave it): nothing to clean up.
    os._exit(INTERRUPTED)


def main() -> None:
    signal.signal(signal.SIGINT, _interrupted_while_loading)
    signal.signal(signal.SIGTERM, _interrupted_while_loading)  # kept: see the module's text
    from vidcolour.cli import main as cli

    signal.signal(signal.SIGINT, signal.default_int_handler)  # commands handle Ctrl-C themselves
    cli()
