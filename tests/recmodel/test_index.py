"""The item index: which kind a catalog gets, that it finds the exact top-10, and that it is
refused beside vectors it was not built from."""

from __future__ import annotations

import numpy as np
import pytest

from recmodel.index import (
    ExactSearch,
    IndexSettings,
    StaleIndexError,
    build,
    choose_spec,
    file_checksum,
    kth_scores,
    open_index,
    recall_at_k,
    tune,
    write_index,
)
from recmodel.runfiles import write_json

SMALL = IndexSettings(exact_max_items=500, hnsw_max_items=2_000, ivf_list_size=64)


def clustered(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((32, d)).astype(np.float32)
    return centres[rng.integers(0, 32, n)] + rng.standard_normal((n, d)).astype(np.float32)


def test_the_index_kind_follows_the_catalog_size_and_memory_budget() -> None:
    assert choose_spec(20_000, 64).kind == "exact"
    assert choose_spec(1_000_000, 64).factory == "HNSW32,Flat"
    assert choose_spec(10_000_000, 64).factory == "IVF8192_HNSW32,SQ8"  # 72 B an item: 1 GiB
    tight = IndexSettings(memory_budget_bytes=400 << 20)
    assert choose_spec(10_000_000, 64, tight).factory == "IVF8192_HNSW32,PQ32"
    with pytest.raises(ValueError, match="raise memory_budget_bytes"):
        choose_spec(10_000_000, 64, IndexSettings(memory_budget_bytes=100 << 20))


@pytest.mark.parametrize("n", [1_500, 4_000], ids=["hnsw", "ivf"])
def test_a_tuned_index_reaches_the_target_recall_on_held_out_queries(n: int) -> None:
    vectors = clustered(n)
    queries = clustered(200, seed=1)
    spec = choose_spec(n, 16, SMALL)
    exact = ExactSearch(vectors)

    index = build(vectors, spec, SMALL)
    tune(index, vectors, queries[:100], kth_scores(exact, queries[:100]), 0.95)
    _, rows = index.search(queries[100:], 10)

    assert spec.kind == ("hnsw" if n < 2_000 else "ivf")
    assert recall_at_k(vectors, queries[100:], rows, kth_scores(exact, queries[100:])) >= 0.9


def test_an_index_is_refused_in_one_line_beside_other_vectors(tmp_path) -> None:
    vectors = clustered(600)
    np.save(tmp_path / "item_embeddings.npy", vectors)
    spec = choose_spec(600, 16, SMALL)
    checksum, size = write_index(build(vectors, spec, SMALL), tmp_path / "item_index.faiss")
    record = {
        "format": 1,
        "metric": "inner_product",
        "spec": spec.to_dict(),
        "search": {"efSearch": 64},
        "vectors_file": "item_embeddings.npy",
        "vectors_checksum": file_checksum(tmp_path / "item_embeddings.npy"),
        "index_file": "item_index.faiss",
        "index_checksum": checksum,
        "index_bytes": size,
        "build_seconds": 0.1,
        "built_at": "now",
    }
    write_json(tmp_path / "item_index.json", record)
    open_index(tmp_path / "item_index.json", tmp_path / "item_embeddings.npy")  # matches
    np.save(tmp_path / "item_embeddings.npy", vectors * 2)

    with pytest.raises(StaleIndexError, match="was built from other vectors") as refused:
        open_index(tmp_path / "item_index.json", tmp_path / "item_embeddings.npy")

    assert "\n" not in str(refused.value) and "linkedout index" in str(refused.value)
