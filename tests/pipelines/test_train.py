"""pipelines.training.run: run directories from a MicroLens-layout dataset and a real (synthetic)
feature store, evaluation from saved files, queries, and the user-facing errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pipelines.errors import PipelineError
from pipelines.serving.queries import evaluate_run, recommend
from pipelines.training.run import train_run
from pipelines.training.sweep import train_sweep
from tests.synthetic import write_topic_dataset, write_topic_store

RUN_FILES = {
    "config.json",
    "model.pt",
    "metrics.json",
    "item_embeddings.npy",
    "item_ids.parquet",
    "gates.parquet",
}
TINY_MODEL = {
    "d_model": 8,
    "n_queries_old": 2,
    "n_queries_new": 1,
    "gate_hidden": 8,
    "n_blocks": 1,
}
FAST = {"epochs": 2, "batch_size": 64}
N_ITEMS, N_TOPICS = 24, 3
NO_VIDEO = ("i005", "i017")  # items the store has no row for
STORE_ONLY = "i099"  # an item with features but no interactions


def _write_dataset(root: Path, n_users: int = 48, seed: int = 0) -> Path:
    return write_topic_dataset(root, n_users=n_users, n_items=N_ITEMS, n_topics=N_TOPICS, seed=seed)


def _write_store(root: Path) -> Path:
    items = [f"i{i:03d}" for i in range(N_ITEMS) if f"i{i:03d}" not in NO_VIDEO]
    # the other item of NO_VIDEO has no video at all
    return write_topic_store(root, [*items, STORE_ONLY], n_topics=N_TOPICS, failed=NO_VIDEO[:1])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("train") / "dataset")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return _write_store(tmp_path_factory.mktemp("train") / "store")


@pytest.fixture(scope="module")
def id_only_run(tmp_path_factory, dataset) -> Path:
    out = tmp_path_factory.mktemp("runs") / "id_only"
    train_run(
        dataset,
        None,
        out,
        variant="id_only",
        model_overrides=TINY_MODEL,
        train_overrides=FAST,
        progress=False,
    )
    return out


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, dataset, store) -> Path:
    out = tmp_path_factory.mktemp("runs") / "full"
    train_run(
        dataset,
        store,
        out,
        variant="full",
        model_overrides=TINY_MODEL,
        train_overrides=FAST,
        progress=False,
    )
    return out


def test_id_only_run_writes_the_run_directory(id_only_run):
    metrics = json.loads((id_only_run / "metrics.json").read_text())

    assert RUN_FILES <= {p.name for p in id_only_run.iterdir()}
    assert metrics["variant"] == "id_only"
    assert set(metrics["test"]) >= {"overall", "cold_start", "head", "mid", "tail"}
    assert set(metrics["test"]["overall"]) == {"n", "hr@10", "hr@20", "ndcg@10", "ndcg@20"}
    assert metrics["training"]["epochs_run"] == 2
    assert pq.read_table(id_only_run / "gates.parquet").num_rows == 0  # no MoE


def test_full_run_on_a_feature_store_reports_gates_and_missing_features(full_run):
    config = json.loads((full_run / "config.json").read_text())
    gates = pq.read_table(full_run / "gates.parquet").to_pandas()
    ids = pq.read_table(full_run / "item_ids.parquet").to_pandas()

    assert config["missing_features"] == {"total": 2, "extraction_failed": 1, "not_extracted": 1}
    assert STORE_ONLY in set(ids["item"])  # the catalog includes store items
    assert set(gates["item"]) == set(ids["item"]) - set(NO_VIDEO)
    assert [c for c in gates.columns if c.startswith("gate_")] == ["gate_L0", "gate_L4", "gate_L8"]
    assert np.allclose(gates[["gate_L0", "gate_L4", "gate_L8"]].sum(axis=1), 1.0, atol=1e-5)


def test_evaluate_run_recomputes_the_same_metrics(full_run):
    before = json.loads((full_run / "metrics.json").read_text())

    result = evaluate_run(full_run)

    assert result.metrics["test"] == before["test"]
    assert result.metrics["training"] == before["training"]
    assert "NDCG@10" in result.describe()


def test_rerun_into_a_finished_run_only_reexports(tmp_path, dataset):
    kwargs = dict(
        variant="id_only", model_overrides=TINY_MODEL, train_overrides=FAST, progress=False
    )
    first = train_run(dataset, None, tmp_path / "run", **kwargs)

    again = train_run(dataset, None, tmp_path / "run", **kwargs)

    assert again.epochs_run == first.epochs_run
    assert again.metrics["test"] == first.metrics["test"]


def test_recommend_excludes_history_and_names_unknown_items(full_run):
    top = recommend(full_run, ["i000", "i003"], k=5)

    assert len(top) == 5 and not {"i000", "i003"} & {item for item, _ in top}
    with pytest.raises(PipelineError, match="^unknown items: zzz, yyy$"):
        recommend(full_run, ["i000", "zzz", "yyy"], k=5)


def test_model_file_of_a_run_loads_with_weights_only(full_run):
    blob = torch.load(full_run / "model.pt", weights_only=True)
    checkpoint = torch.load(full_run / "checkpoint.pt", weights_only=True)

    assert blob["model_config"]["variant"] == "full"
    assert checkpoint["epoch"] == 2


def test_unknown_variant_is_a_pipeline_error(tmp_path, dataset):
    with pytest.raises(PipelineError, match="unknown variant 'fancy'"):
        train_run(dataset, None, tmp_path / "run", variant="fancy")


def test_content_variant_without_a_store_is_a_pipeline_error(tmp_path, dataset):
    with pytest.raises(PipelineError, match="--store"):
        train_run(dataset, None, tmp_path / "run", variant="full")


def test_missing_store_is_a_pipeline_error(tmp_path, dataset):
    with pytest.raises(PipelineError, match="not found|CURRENT"):
        train_run(dataset, tmp_path / "nowhere", tmp_path / "run", variant="full")


def test_missing_interactions_is_a_pipeline_error(tmp_path):
    (tmp_path / "empty").mkdir()

    with pytest.raises(PipelineError, match="interactions.parquet"):
        train_run(tmp_path / "empty", None, tmp_path / "run", variant="id_only")


def test_sweep_trains_every_variant_on_one_catalog(tmp_path, dataset, store):
    variants = ["popularity", "id_only", "last_token_moe", "full_id_fusion"]

    metrics = train_sweep(
        dataset,
        store,
        tmp_path,
        variants,
        epochs=1,
        model_overrides=TINY_MODEL,
        train_overrides={"batch_size": 64},
        progress=False,
    )

    assert list(metrics) == variants
    catalogs = {
        tuple(pq.read_table(tmp_path / v / "item_ids.parquet").column("item").to_pylist())
        for v in variants
    }
    assert len(catalogs) == 1
    assert len({m["test"]["overall"]["n"] for m in metrics.values()}) == 1


@pytest.mark.slow
def test_two_ray_workers_train_a_run(tmp_path, dataset, store):
    import ray

    from pipelines.ray_runtime import ensure_ray

    ensure_ray(num_cpus=2)  # or the Ray of the package's extraction tests, if it is running
    try:
        result = train_run(
            dataset,
            store,
            tmp_path / "run",
            variant="full",
            workers=2,
            model_overrides=TINY_MODEL,
            train_overrides=FAST,
            progress=False,
        )
    finally:
        ray.shutdown()

    assert result.workers == 2 and result.epochs_run == 2
    assert RUN_FILES <= {p.name for p in (tmp_path / "run").iterdir()}
    history = result.metrics["training"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert len(checkpoint["rng"]["sample"]) == 2  # gathered from both ranks of the gloo group
