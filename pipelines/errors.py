"""The one exception type a user is meant to read, and where errors become it.

Library errors carry their own one-line message (featurizer's StoreError naming the path,
recmodel's and featurizer's ValueErrors naming the variant, item, field or file). `user_facing`
marks a pipelines entry point (what the CLI, Dagster and tests call): they leave it as
PipelineError with that message unchanged, so callers catch one type and nothing inside
re-wraps them. The boundaries then print one line: the CLI (pipelines/cli), Dagster
(dagster_project/errors.py) and the Ray workers (extraction/workers.py, training/ray_train.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from featurizer.errors import StoreError, one_line

__all__ = ["EXPECTED_ERRORS", "PipelineError", "one_line", "user_facing"]

P = ParamSpec("P")
R = TypeVar("R")


class PipelineError(Exception):
    """An expected failure (bad input, missing file, busy store): the message names the file,
    item or field, and the CLI prints it without a traceback."""


# What a boundary prints as one line rather than a traceback: the user's to act on (OSError:
# a full disk, a read-only store)
EXPECTED_ERRORS = (PipelineError, StoreError, OSError, ValueError)


def user_facing(function: Callable[P, R]) -> Callable[P, R]:
    """`function`, with the libraries' errors (StoreError, ValueError) raised as PipelineError
    of the same message; the original stays the cause, for a traceback that wants it."""

    @functools.wraps(function)
    def entry_point(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except PipelineError:
            raise
        except (StoreError, ValueError) as exc:
            raise PipelineError(one_line(exc)) from exc

    return entry_point
