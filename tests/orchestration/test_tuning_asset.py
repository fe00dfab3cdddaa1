"""The hyperparameter search as an asset: a training step's run config (TrainConfig's fields,
fixed for every trial) plus what to search; it writes runs/search-<variant>/ and is in no job
that trains the variants."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import ray

from dagster_project import defs
from dagster_project.assets.tuning import SearchConfig, hyperparameter_search
from dagster_project.assets.variants import RankerConfig
from dagster_project.resources import LinkedOutPaths, RayCluster, TrainingSettings
from tests.orchestration import materialization_metadata
from tests.synthetic import write_topic_workspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return write_topic_workspace(tmp_path_factory.mktemp("search-asset"))


def test_the_search_takes_every_field_of_a_training_steps_run_config():
    assert set(RankerConfig.model_fields) <= set(SearchConfig.model_fields)


def test_the_search_asset_fixes_the_run_configs_settings_for_every_trial(workspace):
    (workspace / "space.yaml").write_text("lr_encoder: {choice: [1.0e-3, 3.0e-3]}\n")
    resources = {
        "paths": LinkedOutPaths(
            dataset_dir=str(workspace / "dataset"),
            store_dir=str(workspace / "store"),
            runs_dir=str(workspace / "runs"),
        ),
        "training": TrainingSettings(),
        "ray": RayCluster(),
    }
    run_config = {
        "ops": {
            "hyperparameter_search": {
                "config": {
                    "variant": "id_only",
                    "space": str(workspace / "space.yaml"),
                    "trials": 2,
                    "grace_epochs": 1,
                    "epochs": 2,
                    "seed": 3,
                }
            }
        }
    }

    try:
        result = dg.materialize([hyperparameter_search], resources=resources, run_config=run_config)
    finally:
        ray.shutdown()  # the `ray` resource started it in this process

    assert result.success
    search = workspace / "runs" / "search-id_only"
    table = pd.read_csv(search / "trials.csv")
    assert len(table) == 2 and (search / "best.yaml").is_file()
    for trial in table["trial"]:
        train = json.loads((search / "trials" / trial / "config.json").read_text())["train"]
        assert (train["epochs"], train["seed"]) == (2, 3)  # the run config, in every trial
    metadata = materialization_metadata(result, "hyperparameter_search")
    assert metadata["best validation NDCG@10"] == pytest.approx(table["valid_ndcg@10"].max())


def test_no_job_that_trains_the_variants_runs_a_search():
    search = dg.AssetKey("hyperparameter_search")
    for name in ("linkedout_full", "train_and_evaluate"):
        assert search not in defs.resolve_job_def(name).asset_layer.selected_asset_keys
    assert search in defs.resolve_job_def("tune_training_settings").asset_layer.selected_asset_keys
