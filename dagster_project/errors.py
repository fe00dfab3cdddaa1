"""Dagster's boundary for errors: an asset or check that stops on an expected error (a bad input,
a missing file, a busy store: pipelines.errors.EXPECTED_ERRORS) fails with a dg.Failure whose
description is that error's one line, the line the CLI prints; anything else keeps its
traceback, which is what a bug needs."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from pipelines.errors import EXPECTED_ERRORS, one_line


@contextmanager
def one_line_failures() -> Iterator[None]:
    try:
        yield
    except EXPECTED_ERRORS as exc:
        raise dg.Failure(description=one_line(exc)) from None
