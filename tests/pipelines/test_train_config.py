"""Training settings a user sets: a config file, flags on top, every value recorded in
config.json, a bad value named in one line."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.errors import PipelineError
from pipelines.training.settings import read_config_file, training_values
from tests.synthetic import write_topic_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train-config")
    return write_topic_dataset(root / "dataset", n_users=40, n_items=24, n_topics=3)


def _cli(*argv: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def test_config_file_and_flag_values_reach_config_json(tmp_path, dataset):
    settings = tmp_path / "train.yaml"
    settings.write_text("batch_size: 16\nlr_encoder: 3e-3\nepochs: 5\nmodel: {d_model: 16}\n")
    run = tmp_path / "run"

    code, _, err = _cli(
        "train", "--dataset", dataset, "--out", run, "--variant", "id_only",
        "--config", settings, "--epochs", 1, "--seed", 7, "--memory-budget-bytes", "2GiB",
    )  # fmt: skip

    assert code == 0, err
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["train"]["batch_size"] == 16  # from the file
    assert recorded["train"]["lr_encoder"] == 3e-3  # YAML's 3e-3 is text; read as a number
    assert recorded["train"]["epochs"] == 1 and recorded["train"]["seed"] == 7  # flags win
    assert recorded["train"]["memory_budget_bytes"] == 2 << 30
    assert recorded["model"]["d_model"] == 16
    assert recorded["settings_from"] == str(settings)


def test_every_training_value_is_recorded_resolved(tmp_path, dataset):
    run = tmp_path / "run"

    code, _, err = _cli(
        "train", "--dataset", dataset, "--out", run, "--variant", "id_only", "--epochs", 1
    )

    assert code == 0, err
    train = json.loads((run / "config.json").read_text())["train"]
    assert train["lr_encoder"] == 1e-3 and train["lr_head"] == 1e-3  # the defaults, not Table 6
    assert train["warmup_steps"] == 10
    assert train["device"] == "cpu" and train["precision"] == "fp32"
    assert train["negatives"] == "exact" and train["memory_budget_bytes"] > 0


def test_the_paper_config_is_table_6():
    paper = read_config_file("paper")

    assert paper.train["lr_encoder"] == 1e-4 and paper.train["lr_head"] == 1e-5
    assert paper.train["warmup_steps"] == 0 and paper.train["epochs"] == 100


def test_the_demo_trains_with_the_defaults():
    assert read_config_file("demo").train == {}


@pytest.mark.parametrize(
    ("flag", "value", "named"),
    [("--batch-size", "0", "batch_size"), ("--memory-budget-bytes", "lots", "memory_budget_bytes")],
)
def test_a_bad_flag_value_is_a_one_line_error_naming_the_field(
    tmp_path, dataset, flag, value, named
):
    code, _, err = _cli(
        "train",
        "--dataset",
        dataset,
        "--out",
        tmp_path / "run",
        "--variant",
        "id_only",
        flag,
        value,
    )

    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert named in err
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("negatives: sometimes\n", "negatives: must be one of auto, exact, cached"),
        ("learning_rate: 0.1\n", "unknown field 'learning_rate'"),
        ("model: {d_model: 10, n_heads: 4}\n", "model: d_model=10 must be divisible"),
        ("batch_size: [16\n", "not valid YAML"),
    ],
    ids=["bad_choice", "unknown_field", "bad_model_field", "yaml_syntax"],
)
def test_a_bad_config_file_is_an_error_naming_the_file_and_field(tmp_path, text, named):
    settings = tmp_path / "train.yaml"
    settings.write_text(text)

    with pytest.raises(PipelineError) as info:
        training_values(settings)

    assert str(settings) in str(info.value) and named in str(info.value)
    assert "\n" not in str(info.value)


def test_an_unknown_config_name_lists_the_shipped_ones():
    with pytest.raises(PipelineError, match="not one of: demo"):
        training_values("fancy")


def test_train_help_documents_every_setting(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])

    text = capsys.readouterr().out
    for flag in ("--batch-size", "--lr-encoder", "--negatives", "--cache-refresh-steps",
                 "--memory-budget-bytes", "--max-steps", "--warmup-steps", "--config",
                 "--no-verify-store"):  # fmt: skip
        assert flag in text
