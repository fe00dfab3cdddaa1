"""What training reads: the interactions (stopped when pairs.csv changed since ingest), the
catalog (every item of the interactions and of the store index, sorted: the same for every
variant trained on one dataset and store, so their full-ranking metrics compare), and the store
version (or prompt bank) as recmodel's ItemFeatures. A store that `store verify` would call
FAILED is refused before anything is written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from pipelines.errors import PipelineError
from recmodel.data import Splits, build_splits
from recmodel.features import ItemFeatures
from recmodel.variants import all_variants, get_variant


def _interactions(dataset: Path | str) -> pa.Table:
    from pipelines.dataset.ingest import read_current_interactions

    return read_current_interactions(dataset)  # stops when pairs.csv changed since ingest


def open_store(store: Path | str) -> Any:
    from featurizer.store import FeatureStore

    return FeatureStore.open(store)


def store_features(store: Path | str, catalog: Sequence[str], bank: bool = False) -> ItemFeatures:
    """recmodel's view of a store version (CURRENT) for `catalog`; with `bank`, of every prompt
    of its prompt bank (an item's rows stacked prompt-major, (P * L, K, D)). Picklable via
    functools.partial, so every Ray Train worker opens the store itself."""
    if bank:
        prompts = _open_bank(store)
        return ItemFeatures(
            item_rows=prompts.item_rows(catalog),
            read_rows=prompts.read_rows,
            shape=prompts.row_shape,
            n_new=prompts.new_tokens,
        )
    fs = open_store(store)
    return ItemFeatures(
        item_rows=fs.rows_of(catalog),
        read_rows=fs.read_rows,
        shape=fs.shape_per_item,
        n_new=int(fs.extractor["new_tokens"]),
        read_rows_int8=fs.read_rows_int8 if fs.int8 else None,
    )


def _open_bank(store: Path | str) -> Any:
    from featurizer.store.bank import PromptBank

    return PromptBank.open(store)


@dataclass
class Inputs:
    splits: Splits
    store_info: dict[str, Any]
    features: ItemFeatures | None
    failed: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))  # extraction failed
    data_version: str | None = None  # what a checkpoint must have been trained on


def load_inputs(
    dataset: Path | str,
    store: Path | str | None,
    variant: str,
    max_history: int,
    verify: bool = True,
) -> Inputs:
    spec = get_variant(variant)
    table = _interactions(dataset)
    items = table.column("item").cast(pa.string())
    store_info: dict[str, Any] = {"path": None}
    features = None
    failed = pa.array([], pa.string())
    data_version = None
    if store is not None:
        fs = open_store(store)
        bank = _open_prompt_bank(store, variant) if spec.prompt_bank else None
        if verify:
            _verify_store(store, bank or fs)
        items = pa.chunked_array([*items.chunks, fs.items()])  # the store's own in columns
        failed = fs.items(failed=True)
        extractor = fs.extractor
        store_info = {
            # the root, also when --store named a version: readers join root and fingerprint
            "path": fs.path.parent.address,
            "fingerprint": fs.fingerprint,
            "layers": list(extractor.get("layers", range(fs.shape_per_item[0]))),
            "shape": list(fs.shape_per_item),
            "new_tokens": int(extractor["new_tokens"]),
            "verified": verify,  # False: --no-verify-store
        }
        data_version = f"feature store version {fs.fingerprint}"
        if bank is not None:  # every prompt's version, read together
            members = [m.fingerprint for m in bank.members]
            store_info.update(fingerprint=bank.fingerprint, prompts=bank.prompts, members=members)
            data_version = f"prompt bank {bank.fingerprint} (members {', '.join(members)})"
    elif spec.uses_features:
        raise PipelineError(
            f"variant {variant} reads video features: pass --store (only id_only and "
            f"{', '.join(v.name for v in all_variants() if not v.uses_features)} train "
            "without one)"
        )
    catalog = pc.unique(items).sort().to_pylist()
    try:
        splits = build_splits(table, catalog, max_history)
    except ValueError as exc:
        raise PipelineError(f"{dataset}: {exc}") from None
    if store is not None and spec.uses_features:
        features = store_features(store, catalog, bank=spec.prompt_bank)
    return Inputs(splits, store_info, features, failed, data_version)


def _open_prompt_bank(store: Path | str, variant: str) -> Any:
    """The store's prompt bank, refused in one line when the store has none: a plain version
    opens as a bank of one, and `variant` would train silently on its one prompt."""
    bank = _open_bank(store)
    if not bank.is_bank or len(bank.prompts) < 2:
        raise PipelineError(
            f"feature store {store}: version {bank.fingerprint} is not a prompt bank; "
            f"{variant} needs one: extract with a preset that lists several `prompts`"
        )
    return bank


def _verify_store(store: Path | str, version: Any) -> None:
    """Refuse a store version (or prompt bank) that `linkedout store verify` would call FAILED.
    Only the structure is checked (extractor.json, the arrays, the index: two items on one row,
    rows outside the array, ...); the rows' bytes are checked as training reads them."""
    report = version.verify(check_values=False)
    if report.ok:
        return
    named = f"feature store {version.path}: "  # the line names the version once
    problems = [p.removeprefix(named) for p in report.problems]
    found = [*problems, *(f"item {item}: {why}" for item, why in report.bad_rows.items())]
    shown = "; ".join(found[:3]) + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
    raise PipelineError(
        f"feature store {version.path} would not verify ({shown}); `linkedout store verify "
        f"{store}` lists every problem and `linkedout extract` repairs bad rows; "
        "--no-verify-store trains on it anyway"
    )


def missing_features(
    variant: str, features: ItemFeatures | None, splits: Splits, failed: pa.Array
) -> dict[str, int] | None:
    """How many catalog items have no features, and why; said once on the console. A content
    variant whose every item lacks features would train an ID model under its name: refused."""
    if features is None:
        return None
    without = np.flatnonzero(features.item_rows < 0)
    missing_items = [splits.items[i] for i in without]
    n_missing = len(missing_items)
    n_failed = int(
        pc.sum(pc.is_in(pa.array(missing_items, pa.string()), value_set=failed)).as_py() or 0
    )
    if n_missing == splits.n_items:
        raise PipelineError(
            f"variant {variant} reads video features, but the store holds none for any of the "
            f"{n_missing} catalog items ({n_failed} failed extraction, {n_missing - n_failed} "
            "without a video or not extracted yet): extract them first (`linkedout store info` "
            "shows the store), or train id_only"
        )
    if n_missing:
        shown = ", ".join(missing_items[:10]) + (", ..." if n_missing > 10 else "")
        tqdm.write(
            f"{variant}: {n_missing} of {splits.n_items} items have no features "
            f"({n_failed} failed extraction, {n_missing - n_failed} without a video or not "
            f"extracted yet: {shown}); they take the learned missing-content vector"
        )
    return {
        "total": n_missing,
        "extraction_failed": n_failed,
        "not_extracted": n_missing - n_failed,  # no video, or not extracted yet
    }


def store_version(store_info: dict[str, Any]) -> Any:
    if not store_info.get("path") or not store_info.get("fingerprint"):
        return None
    from featurizer.store import location

    return location(store_info["path"]) / store_info["fingerprint"]
