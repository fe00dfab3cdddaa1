"""The `linkedout` command line: every step the Dagster assets run, without Dagster
(parser.py: the arguments; commands.py: what each does). `main` is its error boundary: an
expected failure (PipelineError, the store's StoreError, a ValueError of bad input, an OSError
such as a full disk) is printed as one line naming the file, item or field; anything else is
one line too, with -v for the traceback; the exit status says whether it failed."""

from __future__ import annotations

import argparse
import logging
import pickle
import sys

from featurizer.errors import StoreError
from pipelines.cli.parser import build_parser
from pipelines.errors import PipelineError, one_line

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader's INFO lines at import
    try:
        status = args.func(args)  # None, or an exit status (store verify: 1 when FAILED)
    except (PipelineError, StoreError, OSError, ValueError) as exc:  # OSError: a full disk
        _error(args, one_line(exc))
        return 1
    except pickle.UnpicklingError as exc:  # torch.load(weights_only=True) refused a file
        from recmodel.runfiles import refused_pickle

        where = getattr(args, "run", None) or getattr(args, "out", None) or "a model file"
        _error(args, refused_pickle(where, exc))
        return 1
    except KeyboardInterrupt:
        print(f"linkedout {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an unforeseen failure: still one line; -v shows where
        if args.verbose:
            raise
        _error(args, f"{type(exc).__name__}: {one_line(exc, 300)} (run with -v for the traceback)")
        return 1
    return int(status or 0)


def _error(args: argparse.Namespace, message: str) -> None:
    print(f"linkedout {args.command}: error: {message}", file=sys.stderr)
