"""Each variant's training step takes training's settings as run config, under TrainConfig's names, on top
of the `training` resource's settings file."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.assets.variants import RankerConfig, variant_assets
from dagster_project.resources import LinkedOutPaths, TrainingSettings
from pipelines.training.settings import train_fields
from tests.synthetic import write_topic_workspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return write_topic_workspace(tmp_path_factory.mktemp("ranker-config"))


def test_ranker_run_config_has_every_training_field():
    assert set(RankerConfig.model_fields) == {f.name for f in train_fields()} | {
        "workers",
        "verify_store",
    }


def test_ranker_run_config_reaches_config_json(workspace):
    settings = workspace / "train.yaml"
    settings.write_text("batch_size: 16\nlr_head: 2e-3\n")
    resources = {
        "paths": LinkedOutPaths(
            dataset_dir=str(workspace / "dataset"),
            store_dir=str(workspace / "store"),
            runs_dir=str(workspace / "runs"),
        ),
        "training": TrainingSettings(config=str(settings)),
    }
    run_config = {
        "ops": {"train_full": {"config": {"epochs": 1, "negatives": "cached", "seed": 3}}}
    }

    result = dg.materialize([variant_assets("full")], resources=resources, run_config=run_config)

    assert result.success
    recorded = json.loads((workspace / "runs" / "full" / "config.json").read_text())
    train = recorded["train"]
    assert recorded["store"]["verified"] is True  # verify_store's default
    assert (train["epochs"], train["negatives"], train["seed"]) == (1, "cached", 3)  # run config
    assert (train["batch_size"], train["lr_head"]) == (16, 2e-3)  # the settings file
    assert train["lr_encoder"] == 1e-3  # neither: the defaults
