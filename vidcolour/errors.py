"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class VidcolourError(Exception):
    """A user-facing error: bad input, bad config, bad weights. Its message is one line."""


class DiskFullError(VidcolourError):
    """An output could not be written because its disk (or quota) is full: every later output
    would fail the same way, so a batch stops rather than recording them all as failed."""


class UsageError(VidcolourError):
    """Options that cannot go together or a value an option does not take: the command line
    exits with 2, as click does for its own usage errors."""


INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C: 128 + SIGINT, as shells say


def first_line(exc: BaseException) -> str:
    """What of ``exc``'s message a one-line error can show: its first line, with the next one
    where the first only introduces it (torch's "Error(s) in loading state_dict for X:" before
    "size mismatch for ..."); the exception's type where it says nothing."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[1]}"
    return lines[0]
