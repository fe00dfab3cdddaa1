"""The hyperparameter search as a job: a training step's run config (TrainConfig's fields,
fixed for every trial) plus what to search; it writes runs/search-<variant>/ and stays out of
the asset graph, so no "Materialize all" and no job that trains the variants runs a search."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import ray

from dagster_project import defs
from dagster_project.assets.variants import RankerConfig
from dagster_project.resources import LinkedOutPaths, RayCluster, TrainingSettings
from dagster_project.tuning import SearchConfig, tune_training_settings
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
        result = tune_training_settings.execute_in_process(
            resources=resources, run_config=run_config
        )
    finally:
        ray.shutdown()  # the `ray` resource started it in this process

    assert result.success
    search = workspace / "runs" / "search-id_only"
    table = pd.read_csv(search / "trials.csv")
    assert len(table) == 2 and (search / "best.yaml").is_file()
    for trial in table["trial"]:
        train = json.loads((search / "trials" / trial / "config.json").read_text())["train"]
        assert (train["epochs"], train["seed"]) == (2, 3)  # the run config, in every trial
    [output] = [
        e for e in result.all_node_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT
    ]
    metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert metadata["best validation NDCG@10"] == pytest.approx(table["valid_ndcg@10"].max())


def test_the_search_is_in_no_asset_graph_and_no_job_that_trains():
    for name in ("linkedout_full", "train_and_evaluate"):
        assert "hyperparameter_search" not in defs.resolve_job_def(name).graph.node_dict
    assert "hyperparameter_search" not in {
        k.to_user_string() for k in defs.resolve_all_asset_keys()
    }
    assert "hyperparameter_search" in defs.resolve_job_def("tune_training_settings").graph.node_dict
