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
