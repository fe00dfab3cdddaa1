"""The one exception type a user is meant to read: the CLI prints it as a single line."""


class PipelineError(Exception):
    """An expected failure (bad input, missing file, busy store): the message names the file,
    item or field, and the CLI prints it without a traceback."""


def one_line(exc: BaseException, limit: int | None = None) -> str:
    """An exception's message as one line (whitespace and newlines collapsed; the exception's
    type where it has no message), cut at `limit` characters with "..." where one is given."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if limit is not None and len(text) > limit:
        return text[:limit] + "..."
    return text
