"""The item index assets with a real Dagster instance: rebuilt, and shown stale, only when the
vectors they index changed."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from dagster_project.assets.index import index_asset
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
    train, index = variant_assets("popularity"), index_asset("popularity")

    with dg.instance_for_test() as instance:
        first = dg.materialize([train, index], resources=resources, instance=instance)
        dg.materialize([train], resources=resources, instance=instance)  # the same counts
        status = _index_status(instance, [train, index], resources, "popularity")
        again = dg.materialize([index], resources=resources, instance=instance)

    assert materialization_metadata(first, "item_index_popularity")["rebuilt"]
    assert status == StaleStatus.FRESH
    kept = materialization_metadata(again, "item_index_popularity")
    assert not kept["rebuilt"] and kept["why"].startswith("built from these vectors")


def test_new_vectors_make_the_item_index_stale_and_it_rebuilds(tmp_path) -> None:
    resources = _resources(write_topic_workspace(tmp_path))
    train, index = variant_assets("id_only"), index_asset("id_only")

    def seed(value: int) -> dict:
        return {"ops": {"train_id_only": {"config": {"epochs": 1, "seed": value}}}}

    with dg.instance_for_test() as instance:
        dg.materialize([train, index], resources=resources, instance=instance, run_config=seed(1))
        dg.materialize([train], resources=resources, instance=instance, run_config=seed(2))
        stale = _index_status(instance, [train, index], resources, "id_only")
        rebuilt = dg.materialize([index], resources=resources, instance=instance)
        fresh = _index_status(instance, [train, index], resources, "id_only")

    assert stale == StaleStatus.STALE
    metadata = materialization_metadata(rebuilt, "item_index_id_only")
    assert metadata["rebuilt"] and metadata["why"] == "the vectors changed"
    assert fresh == StaleStatus.FRESH
