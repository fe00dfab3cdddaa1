"""`linkedout store derive`: a compact view of a store version (fewer layers, fewer old tokens)
written beside it without re-extraction (featurizer.store_derive)."""

from __future__ import annotations

import logging
from pathlib import Path

from featurizer.store import FeatureStore, StoreBusyError, StoreError
from featurizer.store_derive import Derivation, DeriveSummary, derive_version
from pipelines.errors import PipelineError, one_line

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


def store_derive(
    store: Path,
    layers: tuple[int, ...] | None = None,
    k_tokens: int | None = None,
    int8: bool = False,
) -> DeriveSummary:
    """Derive the view of `store` (a version directory, or a root: its CURRENT version)."""
    derivation = Derivation(layers=layers, k_tokens=k_tokens, int8=int8)
    try:
        source = FeatureStore.open(Path(store))
        return derive_version(source, derivation, progress=log.info)
    except StoreBusyError as exc:
        raise PipelineError(f"{exc}; rerun when it has finished") from None
    except StoreError as exc:
        raise PipelineError(str(exc)) from None
    except ValueError as exc:  # a flag the source cannot give (check_derivation)
        raise PipelineError(f"{Path(store)}: {exc}") from None
    except OSError as exc:
        raise PipelineError(f"feature store {store}: {one_line(exc, 500)}") from None
