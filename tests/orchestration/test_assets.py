"""Each asset alone through `dg.materialize`, with test resources: what it writes, what it leaves
alone, and what it reports."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from dagster_project.assets.dataset import interactions, video_catalog
from dagster_project.assets.features import video_features
from dagster_project.assets.report import evaluation_report
from dagster_project.assets.variants import beats_popularity, variant_assets
from dagster_project.assets.views import store_views
from dagster_project.resources import (
    ExtractorPreset,
    LinkedOutPaths,
    RayCluster,
    StoreViews,
    TrainingSettings,
)
from featurizer.config import PRESET_DIR
from recmodel.variants import variant_names
from tests.orchestration import materialization_metadata
from tests.synthetic import write_topic_workspace

VARIANTS = variant_names()  # the registered variants

FIXTURE_RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "report_runs"
GOLDEN_TABLES = FIXTURE_RUNS / "tables_by_the_sweep_in_report.md"


def _paths(root: Path) -> LinkedOutPaths:
    return LinkedOutPaths(
        dataset_dir=str(root / "dataset"),
        store_dir=str(root / "store"),
        runs_dir=str(root / "runs"),
        report_dir=str(root / "report"),
    )


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def topic_root(tmp_path_factory) -> Path:
    return write_topic_workspace(tmp_path_factory.mktemp("topic"))


def test_interactions_ingests_the_split_and_reports_its_size(tmp_path, demo_dataset) -> None:
    shutil.copytree(demo_dataset, tmp_path / "dataset")

    result = dg.materialize([interactions], resources={"paths": _paths(tmp_path)})

    metadata = materialization_metadata(result, "interactions")
    assert (tmp_path / "dataset" / "interactions.parquet").is_file()
    assert metadata["users"] == 40 and metadata["inputs since the last ingest"] == "first ingest"


def test_video_catalog_lists_every_video(tmp_path, demo_dataset) -> None:
    shutil.copytree(demo_dataset, tmp_path / "dataset")

    result = dg.materialize([video_catalog], resources={"paths": _paths(tmp_path)})

    assert materialization_metadata(result, "video_catalog")["videos"] == 12


def test_one_variant_writes_only_its_own_run_directory(topic_root) -> None:
    other = topic_root / "runs" / "id_only"
    other.mkdir(parents=True, exist_ok=True)
    (other / "metrics.json").write_text('{"kept": true}')
    before = _tree_digest(other)

    result = dg.materialize(
        [variant_assets("popularity")],
        resources={"paths": _paths(topic_root), "training": TrainingSettings()},
    )

    assert result.success
    assert _tree_digest(other) == before
    assert {p.name for p in (topic_root / "runs").iterdir()} == {"id_only", "popularity"}


def test_a_variant_step_materializes_its_run_and_its_vectors_with_metadata(
    topic_root,
) -> None:
    result = dg.materialize(
        [variant_assets("full")],
        resources={"paths": _paths(topic_root), "training": TrainingSettings()},
        run_config={"ops": {"train_full": {"config": {"epochs": 1}}}},
    )

    ranker = materialization_metadata(result, "ranker_full")
    vectors = materialization_metadata(result, "item_embeddings_full")
    assert 0.0 <= ranker["NDCG@10"] <= 1.0 and ranker["epochs"] == 1
    assert vectors["items"] == 24 and vectors["query p50 ms (history -> top-10)"] > 0
    assert (topic_root / "runs" / "full" / "serving.json").is_file()


def test_store_views_trains_full_on_each_named_view_beside_the_variants(tmp_path) -> None:
    root = write_topic_workspace(tmp_path)
    (tmp_path / "train.yaml").write_text("epochs: 1\n")

    result = dg.materialize(
        [store_views],
        resources={
            "paths": _paths(root),
            "views": StoreViews(views=["int8", "layers=0,8"]),
            "training": TrainingSettings(config=str(tmp_path / "train.yaml")),
        },
    )

    metadata = materialization_metadata(result, "store_views")
    assert metadata["bytes per video: int8"] == 3 * 6 * 8 + 3 * 6 * 2  # int8 + a scale a token
    assert metadata["bytes per video: layers-0-8"] == 2 * 6 * 8 * 2
    assert sorted(p.name for p in (root / "runs").iterdir()) == ["views"]
    assert sorted(p.name for p in (root / "runs" / "views").iterdir()) == ["int8", "layers-0-8"]


def test_store_views_trains_nothing_when_no_view_is_named(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("LINKEDOUT_STORE_VIEWS", raising=False)

    result = dg.materialize(
        [store_views],
        resources={
            "paths": _paths(tmp_path),
            "views": StoreViews(),
            "training": TrainingSettings(),
        },
    )

    assert materialization_metadata(result, "store_views")["views"] == "none configured"
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def stored_runs(tmp_path) -> Path:
    shutil.copytree(FIXTURE_RUNS, tmp_path / "runs", ignore=shutil.ignore_patterns("*.md"))
    return tmp_path


def test_the_report_only_reads_the_stored_runs(stored_runs) -> None:
    before = _tree_digest(stored_runs / "runs")

    result = dg.materialize([evaluation_report], resources={"paths": _paths(stored_runs)})

    assert result.success
    assert _tree_digest(stored_runs / "runs") == before
    assert (stored_runs / "report" / "report.html").is_file()


def test_report_tables_are_byte_identical_to_the_sweep_in_report_from_the_same_runs(
    stored_runs,
) -> None:
    dg.materialize([evaluation_report], resources={"paths": _paths(stored_runs)})

    markdown = (stored_runs / "report" / "report.md").read_text()
    tables = markdown[markdown.index("## Comparison") : markdown.index("## Prompt mixture")]
    assert tables == GOLDEN_TABLES.read_text()


def test_beats_popularity_reads_both_variants_metrics(stored_runs) -> None:
    before = _tree_digest(stored_runs / "runs")

    result = dg.materialize(
        [variant_assets("full"), variant_assets("popularity"), beats_popularity],
        resources={"paths": _paths(stored_runs), "training": TrainingSettings()},
        selection=dg.AssetSelection.checks(beats_popularity),
    )

    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.passed
    assert (
        evaluation.metadata["ranker NDCG@10"].value
        == json.loads((stored_runs / "runs" / "full" / "metrics.json").read_text())["test"][
            "overall"
        ]["ndcg@10"]
    )
    assert _tree_digest(stored_runs / "runs") == before


@pytest.mark.slow
def test_new_videos_change_the_features_data_version_and_make_the_variants_stale(
    tmp_path, demo_dataset, tiny_model
) -> None:
    dataset = tmp_path / "dataset"
    shutil.copytree(demo_dataset, dataset)
    held_back = sorted((dataset / "videos").iterdir())[-1]
    shutil.move(held_back, tmp_path / held_back.name)
    preset = json.loads((PRESET_DIR / "demo.json").read_text())
    preset["model"] = str(tiny_model)
    (tmp_path / "preset.json").write_text(json.dumps(preset))
    resources = {
        "paths": _paths(tmp_path),
        "ray": RayCluster(),
        "extractor": ExtractorPreset(preset=str(tmp_path / "preset.json")),
        "training": TrainingSettings(),
    }
    assets = [interactions, video_catalog, video_features, variant_assets("popularity")]
    graph = dg.Definitions(assets=assets, resources=resources).resolve_asset_graph()
    popularity = dg.AssetKey("ranker_popularity")

    def status(instance: dg.DagsterInstance) -> StaleStatus:
        resolver = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
        return resolver.get_status(popularity)

    with dg.instance_for_test() as instance:
        first = dg.materialize(assets, resources=resources, instance=instance)
        fresh = status(instance)
        again = dg.materialize(
            [video_catalog, video_features], resources=resources, instance=instance
        )
        unchanged = status(instance)
        shutil.move(tmp_path / held_back.name, held_back)
        dg.materialize([video_catalog, video_features], resources=resources, instance=instance)
        after_new_videos = status(instance)
    import ray

    ray.shutdown()

    versions = [
        r.asset_materializations_for_node("video_features")[0].tags["dagster/data_version"]
        for r in (first, again)
    ]
    assert fresh == StaleStatus.FRESH
    assert versions[0] == versions[1] and unchanged == StaleStatus.FRESH  # nothing extracted
    assert after_new_videos == StaleStatus.STALE


def test_every_variant_has_a_step() -> None:
    assert {variant_assets(v).node_def.name for v in VARIANTS} == {f"train_{v}" for v in VARIANTS}
