"""A run's item index (pipelines.serving.index) and the queries that go through it (pipelines.serving.queries)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipelines.errors import PipelineError
from pipelines.serving.index import index_run
from pipelines.serving.queries import recommend, recommend_users
from recmodel.index import IndexSettings
from recmodel.model import build_model
from recmodel.runfiles import EMBEDDINGS_FILE, INDEX_FILE, INDEX_RECORD_FILE, export_run
from tests.recmodel import helpers

HNSW_FOR_ANY_SIZE = IndexSettings(exact_max_items=1)


@pytest.fixture(scope="module")
def splits():
    return helpers.splits(n_users=60, n_items=24)


@pytest.fixture
def make_run(tmp_path, splits):
    """A run directory as training leaves it (random weights: seed decides the vectors)."""

    def make(name: str = "run", seed: int = 0):
        torch.manual_seed(seed)
        cfg = helpers.model_config("id_only", splits.n_items)
        out = tmp_path / name
        export_run(out, cfg, build_model(cfg), None, splits)
        (out / "config.json").write_text(json.dumps({"variant": "id_only", "dataset": "-"}))
        return out

    return make


def test_recommendations_through_the_index_exclude_the_history(make_run, splits) -> None:
    run = make_run()
    index_run(run, HNSW_FOR_ANY_SIZE)
    history = [splits.items[i] for i in (0, 3, 4)]

    top = recommend(run, history, k=len(splits.items))

    assert len(top) == len(splits.items) - len(history)
    assert not {item for item, _ in top} & set(history)


def test_a_stale_index_is_refused_in_one_line(make_run, splits) -> None:
    run = make_run()
    index_run(run, HNSW_FOR_ANY_SIZE)
    vectors = np.load(run / EMBEDDINGS_FILE)
    np.save(run / EMBEDDINGS_FILE, vectors[::-1].copy())  # new vectors, the old index

    with pytest.raises(PipelineError, match="was built from other vectors") as refused:
        recommend(run, [splits.items[0]], k=3)

    assert "\n" not in str(refused.value) and str(run / INDEX_FILE) in str(refused.value)


def test_an_index_copied_from_another_run_is_refused(make_run, splits) -> None:
    ours, theirs = make_run("ours", seed=0), make_run("theirs", seed=1)
    index_run(theirs, HNSW_FOR_ANY_SIZE)
    for name in (INDEX_FILE, INDEX_RECORD_FILE):
        shutil.copy(theirs / name, ours / name)

    with pytest.raises(PipelineError, match="was built from other vectors"):
        recommend(ours, [splits.items[0]], k=3)


def test_the_index_is_rebuilt_after_new_vectors_and_not_otherwise(make_run) -> None:
    run = make_run()
    first = index_run(run, HNSW_FOR_ANY_SIZE)
    again = index_run(run, HNSW_FOR_ANY_SIZE)
    np.save(run / EMBEDDINGS_FILE, np.load(run / EMBEDDINGS_FILE) * 2)
    after_new_vectors = index_run(run, HNSW_FOR_ANY_SIZE)

    assert first.built and not again.built
    assert again.record.index_checksum == first.record.index_checksum
    assert after_new_vectors.built and after_new_vectors.reason == "the vectors changed"


def test_a_small_catalog_gets_an_exact_index_with_the_exact_top_10(make_run) -> None:
    result = index_run(make_run())

    assert result.record.spec.kind == "exact"
    assert result.record.evaluation["same_top10"] == 1.0
    assert result.record.evaluation["recall_at_10"] == 1.0


def _write_users(path, users):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({"user": u, "history": h}) + "\n" for u, h in users))
    else:
        pq.write_table(
            pa.table({"user": [u for u, _ in users], "history": [h for _, h in users]}), path
        )


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_batch_scoring_of_a_users_file_matches_single_queries(
    make_run, splits, tmp_path, suffix
) -> None:
    run = make_run()
    index_run(run, HNSW_FOR_ANY_SIZE)
    rng = np.random.default_rng(0)
    users = [
        (f"u{u}", [splits.items[i] for i in rng.choice(splits.n_items, 1 + u % 6, replace=False)])
        for u in range(7)
    ]
    _write_users(tmp_path / f"users{suffix}", users)

    result = recommend_users(run, tmp_path / f"users{suffix}", tmp_path / "top.parquet", 5, 3)

    table = pq.read_table(tmp_path / "top.parquet").to_pylist()
    assert result.users == 7 and result.rows == 7 * 5
    for user, history in users:
        batch = [(r["item"], r["score"]) for r in table if r["user"] == user]
        single = recommend(run, history, k=5)
        assert [item for item, _ in batch] == [item for item, _ in single]
        np.testing.assert_allclose([s for _, s in batch], [s for _, s in single], rtol=1e-4)
