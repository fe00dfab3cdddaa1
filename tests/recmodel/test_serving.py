from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from recmodel.config import ModelConfig
from recmodel.model import build_model
from recmodel.runfiles import EMBEDDINGS_FILE, GATES_FILE, ITEM_IDS_FILE, MODEL_FILE, export_run
from recmodel.serving import Recommender, UnknownItemsError, evaluate_recommender
from tests.recmodel import helpers
from tests.recmodel.helpers import L


@pytest.fixture(scope="module")
def splits():
    return helpers.splits(n_users=30, n_items=15)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, splits):
    torch.manual_seed(0)
    cfg = helpers.model_config("full", splits.n_items)
    item_features, _ = helpers.features(splits.n_items, missing=(2,))
    out = tmp_path_factory.mktemp("run")
    export_run(out, cfg, build_model(cfg), helpers.bank("full", item_features), splits, [0, 4, 8])
    return out


def test_recommend_excludes_the_history(run_dir, splits):
    rec = Recommender.load(run_dir)
    history = [splits.items[i] for i in (0, 1, 5)]

    top = rec.recommend(history, k=len(splits.items))

    assert len(top) == len(splits.items) - 3
    assert not {item for item, _ in top} & set(history)
    scores = [s for _, s in top]
    assert scores == sorted(scores, reverse=True)


def test_recommend_returns_the_k_best_scored_items(run_dir, splits):
    rec = Recommender.load(run_dir)
    history = [splits.items[3]]

    top = rec.recommend(history, k=4)

    scores = rec.scores(history)
    scores[3] = float("-inf")
    expected = [splits.items[i] for i in torch.topk(scores, 4).indices.tolist()]
    assert [item for item, _ in top] == expected


def test_unknown_history_items_are_named_in_one_error(run_dir, splits):
    rec = Recommender.load(run_dir)

    with pytest.raises(UnknownItemsError, match=r"^unknown items: nope, nada$"):
        rec.recommend([splits.items[0], "nope", "nada", "nope"], k=3)


def test_model_file_loads_with_weights_only(run_dir):
    blob = torch.load(run_dir / MODEL_FILE, weights_only=True)

    assert ModelConfig.from_dict(blob["model_config"]).variant == "full"
    assert all(isinstance(t, torch.Tensor) for t in blob["state_dict"].values())


def test_export_writes_one_vector_per_catalog_item_and_gates_per_featured_item(run_dir, splits):
    vectors = np.load(run_dir / EMBEDDINGS_FILE)
    ids = pq.read_table(run_dir / ITEM_IDS_FILE)
    gates = pq.read_table(run_dir / GATES_FILE).to_pandas()

    assert vectors.shape == (splits.n_items, 8) and vectors.dtype == np.float32
    assert ids.column("item").to_pylist() == splits.items
    assert ids.column("has_features").to_pylist().count(False) == 1
    assert list(gates.columns) == [
        "item",
        "gate_L0",
        "gate_L4",
        "gate_L8",
        "h_norm_L0",
        "h_norm_L4",
        "h_norm_L8",
    ]
    assert len(gates) == splits.n_items - 1 and splits.items[2] not in set(gates["item"])
    assert np.allclose(gates[[f"gate_L{ell}" for ell in (0, 4, 8)]].sum(axis=1), 1.0)
    assert L == 3


def test_popularity_recommends_the_most_trained_items(tmp_path, splits):
    cfg = ModelConfig(variant="popularity", n_items=splits.n_items)
    export_run(tmp_path, cfg, None, None, splits)
    rec = Recommender.load(tmp_path)

    top = rec.recommend([splits.items[0]], k=3)

    counts = {item: c for item, c in zip(splits.items, splits.train_counts, strict=True)}
    best = sorted((c for item, c in counts.items() if item != splits.items[0]), reverse=True)
    assert [counts[item] for item, _ in top] == best[:3]


def test_evaluation_from_saved_files_covers_valid_and_test(run_dir, splits):
    metrics = evaluate_recommender(Recommender.load(run_dir), splits)

    assert metrics["test"]["overall"]["n"] == len(splits.test)
    assert 0.0 <= metrics["valid"]["overall"]["ndcg@10"] <= 1.0
