"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class VidcolourError(Exception):
    """A user-facing error: bad input, bad config, bad weights. Its message is one line."""
