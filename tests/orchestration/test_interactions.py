"""The `interactions` asset and its freshness check when pairs.csv changes after an ingest."""

import shutil
from pathlib import Path

import dagster as dg

from dagster_project.assets.dataset import interactions, interactions_current
from dagster_project.resources import LinkedOutPaths


def _materialize(dataset: Path) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [interactions, interactions_current],
        resources={"paths": LinkedOutPaths(dataset_dir=str(dataset))},
    )


def _changed_metadata(result: dg.ExecuteInProcessResult) -> str:
    [event] = result.asset_materializations_for_node("interactions")
    return event.metadata["inputs since the last ingest"].value


def test_edited_pairs_csv_fails_the_check_and_is_ingested_again(
    demo_dataset: Path, tmp_path: Path
) -> None:
    dataset = tmp_path / "dataset"
    shutil.copytree(demo_dataset, dataset, ignore=shutil.ignore_patterns("videos"))
    first = _materialize(dataset)
    pairs = dataset / "pairs.csv"
    pairs.write_text(pairs.read_text() + "\n".join(f"late,v0001,{t}" for t in range(3)) + "\n")

    check = dg.materialize(
        [interactions, interactions_current],
        resources={"paths": LinkedOutPaths(dataset_dir=str(dataset))},
        selection=dg.AssetSelection.checks(interactions_current),
        raise_on_error=False,  # a failed blocking check fails its step: nothing downstream runs
    )
    second = _materialize(dataset)

    assert _changed_metadata(first) == "first ingest"
    [stale] = check.get_asset_check_evaluations()
    assert not stale.passed and not check.success
    assert "pairs.csv changed" in stale.metadata["changed since ingest"].value
    assert "pairs.csv changed" in _changed_metadata(second)
    assert all(e.passed for e in second.get_asset_check_evaluations())
