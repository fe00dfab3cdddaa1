"""The item index assets with a real Dagster instance: rebuilt, and shown stale, only when the
vectors they index changed."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from dagster_project.assets.index import item_indexes
from dagster_project.assets.variants import variant_assets
from dagster_project.resources import LinkedOutPaths, TrainingSettings
from tests.orchestration import materialization_metadata
from tests.synthetic import write_topic_workspace


def _resources(root: Path) -> dict:
    paths = LinkedOutPaths(
        dataset_dir=str(root / "dataset"),
        store_dir=str(root / "store"),
        runs_dir=str(root / "runs"),
    )
    return {"paths": paths, "training": TrainingSettings()}


def _train(variant: str) -> list[str]:
    return [f"ranker_{variant}", f"item_embeddings_{variant}"]


def _materialize(
    assets: list,
    resources: dict,
    instance: dg.DagsterInstance,
    keys: list[str],
    run_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        resources=resources,
        instance=instance,
        selection=dg.AssetSelection.assets(*keys),
        run_config=run_config,
    )


def _index_status(
    instance: dg.DagsterInstance, assets: list, resources: dict, variant: str
) -> StaleStatus:
    graph = dg.Definitions(assets=assets, resources=resources).resolve_asset_graph()
    resolver = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
    return resolver.get_status(dg.AssetKey(f"item_index_{variant}"))


def test_the_item_index_stays_fresh_and_is_kept_when_a_retrain_leaves_the_vectors_unchanged(
    tmp_path,
) -> None:
    resources = _resources(write_topic_workspace(tmp_path))
    assets = [variant_assets("popularity"), item_indexes]
    index = ["item_index_popularity"]

    with dg.instance_for_test() as instance:
        first = _materialize(assets, resources, instance, _train("popularity") + index)
        _materialize(assets, resources, instance, _train("popularity"))  # the same counts
        status = _index_status(instance, assets, resources, "popularity")
        again = _materialize(assets, resources, instance, index)

    assert materialization_metadata(first, "item_index_popularity")["rebuilt"]
    assert status == StaleStatus.FRESH
    kept = materialization_metadata(again, "item_index_popularity")
    assert not kept["rebuilt"] and kept["why"].startswith("built from these vectors")


def test_new_vectors_make_the_item_index_stale_and_it_rebuilds(tmp_path) -> None:
    resources = _resources(write_topic_workspace(tmp_path))
    assets, index = [variant_assets("id_only"), item_indexes], ["item_index_id_only"]

    def seed(value: int) -> dict:
        return {"ops": {"train_id_only": {"config": {"epochs": 1, "seed": value}}}}

    with dg.instance_for_test() as instance:
        _materialize(assets, resources, instance, _train("id_only") + index, seed(1))
        _materialize(assets, resources, instance, _train("id_only"), seed(2))
        stale = _index_status(instance, assets, resources, "id_only")
        rebuilt = _materialize(assets, resources, instance, index)
        fresh = _index_status(instance, assets, resources, "id_only")

    assert stale == StaleStatus.STALE
    metadata = materialization_metadata(rebuilt, "item_index_id_only")
    assert metadata["rebuilt"] and metadata["why"] == "the vectors changed"
    assert fresh == StaleStatus.FRESH
