"""The store commands that write versions: `linkedout store upgrade` (format-1 versions into
shards), `store compact` (partial shards into full ones) and `store derive` (a compact view:
fewer layers, fewer old tokens, int8), none of which re-extracts anything."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from featurizer.store import FeatureStore, StoreBusyError
from featurizer.store.derive import Derivation, DeriveSummary, derive_version
from pipelines.errors import PipelineError, one_line, user_facing

log = logging.getLogger(__name__)


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    """ "0,8,20" -> (0, 8, 20); a one-line error naming --layers for anything else."""
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise PipelineError(
            f"--layers: {text!r} is not a comma-separated list of hidden-state indices"
        ) from None


@contextmanager
def _rewriting(store: Path | str) -> Iterator[None]:
    """A command that writes versions of `store`: its store and disk errors as one line."""
    try:
        yield
    except StoreBusyError as exc:
        raise PipelineError(f"{exc}; rerun when it has finished") from None
    except OSError as exc:
        raise PipelineError(f"feature store {store}: {one_line(exc, 500)}") from None


@user_facing
def store_upgrade(store: Path | str) -> Any:
    """`linkedout store upgrade`: rewrite the format-1 versions of a store (or one version) in
    format 2 without re-extracting (featurizer.store.upgrade)."""
    from featurizer.store.upgrade import upgrade

    with _rewriting(store):
        return upgrade(store, progress=log.info)


@user_facing
def store_compact(store: Path | str, retain: float | None = None) -> list[Any]:
    """`linkedout store compact`: rewrite the partial shards of a version (each prompt's, for a
    bank) into full ones and delete what no reader may still need (featurizer.store.compaction);
    one summary a version."""
    from featurizer.store.bank import PromptBank
    from featurizer.store.compaction import RETAIN_SECONDS, compact

    with _rewriting(store):
        bank = PromptBank.open(store)
        return [
            compact(member, RETAIN_SECONDS if retain is None else retain, progress=log.info)
            for member in bank.members
        ]


@user_facing
def store_derive(
    store: Path | str,
    layers: tuple[int, ...] | None = None,
    k_tokens: int | None = None,
    int8: bool = False,
) -> DeriveSummary:
    """Derive the view of `store` (a version directory, or a root: its CURRENT version)."""
    derivation = Derivation(layers=layers, k_tokens=k_tokens, int8=int8)
    with _rewriting(store):
        try:
            source = FeatureStore.open(store)
            return derive_version(source, derivation, progress=log.info)
        except ValueError as exc:  # a flag the source cannot give (check_derivation)
            raise PipelineError(f"{store}: {exc}") from None
