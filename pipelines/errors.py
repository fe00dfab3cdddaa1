"""The one exception type a user is meant to read: the CLI prints it as a single line."""


class PipelineError(Exception):
    """An expected failure (bad input, missing file, busy store): the message names the file,
    item or field, and the CLI prints it without a traceback."""
