"""Bad training settings a careless user writes: every `model:` field and the memory budget are
checked like TrainConfig's fields, refused in one line naming the field, and nothing is written
(not even the run directory) before every check has passed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recmodel.memory import machine_memory
from tests.faults.conftest import CliResult, assert_one_line_error, run_cli
from tests.synthetic import write_topic_dataset, write_topic_store


def _said(result: CliResult) -> str:
    """The line the user saw: the error, else the summary of the run trained."""
    trained = [line for line in result.stdout.splitlines() if line.startswith("trained ")]
    return result.error_line or (trained or [f"exit {result.code}"])[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("training-settings")
    return write_topic_dataset(root / "dataset", n_users=40, n_items=24, n_topics=3)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("training-settings")
    return write_topic_store(root / "store", [f"i{i:03d}" for i in range(24)], n_topics=3)


MODEL_SETTINGS = [
    # (the model: mapping, the field the error names)
    ({"n_heads": 0}, "n_heads"),
    ({"d_model": 0}, "d_model"),
    ({"d_model": -64}, "d_model"),
    ({"d_model": "64"}, "d_model"),
    ({"d_model": 64.0}, "d_model"),
    ({"d_model": True}, "d_model"),
    ({"d_model": 48, "n_heads": 5}, "n_heads"),
    ({"pool_heads": 0}, "pool_heads"),
    ({"n_queries_old": 0}, "n_queries_old"),
    ({"n_queries_new": -1}, "n_queries_new"),
    ({"expert_mult": 0}, "expert_mult"),
    ({"gate_hidden": 0}, "gate_hidden"),
    ({"dropout": 5}, "dropout"),
    ({"dropout": -0.1}, "dropout"),
    ({"dropout": float("nan")}, "dropout"),
    ({"dropout": "lots"}, "dropout"),
    ({"id_dropout": 3}, "id_dropout"),
    ({"id_dropout": float("inf")}, "id_dropout"),
    ({"max_history": 0}, "max_history"),
    ({"max_history": 2.5}, "max_history"),
    ({"n_blocks": -1}, "n_blocks"),
    ({"n_blocks": None}, "n_blocks"),
    ({"n_prompts": 3}, "n_prompts"),  # follows from the store, never set by hand
]


@pytest.mark.parametrize(
    ("model", "named"),
    MODEL_SETTINGS,
    ids=[f"{next(iter(m))}={list(m.values())[-1]!r}" for m, _ in MODEL_SETTINGS],
)
def test_a_bad_model_setting_is_refused_in_one_line_naming_the_field(
    dataset, store, tmp_path, fault_report, model, named
):
    settings = tmp_path / "train.json"
    settings.write_text(json.dumps({"model": model}))  # NaN and Infinity as JSON spells them
    out = tmp_path / "run"

    result = run_cli(
        ["train", "--dataset", dataset, "--store", store, "--out", out,
         "--variant", "full_id_fusion", "--config", settings, "--epochs", 1]
    )  # fmt: skip

    fault_report.record(
        f"model: {json.dumps(model)} in a config file",
        survived=result.code == 1 and named in result.error_line and not out.exists(),
        message=_said(result),
    )
    line = assert_one_line_error(result, str(settings), named)
    assert "Error:" not in line  # a check's message, not an exception's name
    assert not out.exists()  # no run directory, no config.json


@pytest.mark.parametrize("budget", ["12iB", "0.5", "0.0001K", "1.5", "12XB", "-1G", "nan", "1e999"])
def test_a_malformed_memory_budget_is_refused_in_one_line(dataset, tmp_path, fault_report, budget):
    out = tmp_path / "run"

    result = run_cli(
        ["train", "--dataset", dataset, "--out", out, "--variant", "id_only",
         f"--memory-budget-bytes={budget}", "--epochs", 1]
    )  # fmt: skip

    fault_report.record(
        f"--memory-budget-bytes {budget}",
        survived=result.code == 1 and not out.exists(),
        message=_said(result),
    )
    assert_one_line_error(result, "memory_budget_bytes", repr(budget))
    assert not out.exists()


def test_a_memory_budget_above_the_machines_memory_is_refused(dataset, tmp_path, fault_report):
    out = tmp_path / "run"

    result = run_cli(
        ["train", "--dataset", dataset, "--out", out, "--variant", "id_only",
         "--memory-budget-bytes", "999T", "--epochs", 1]
    )  # fmt: skip

    memory = f"{machine_memory() / 2**30:.1f} GiB"
    fault_report.record(
        "--memory-budget-bytes 999T (more than the machine has)",
        survived=result.code == 1 and not out.exists(),
        message=_said(result),
    )
    assert_one_line_error(result, "memory_budget_bytes", memory)
    assert not out.exists()
