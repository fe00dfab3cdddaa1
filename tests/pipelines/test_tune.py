"""`linkedout tune`: trials of `train` on Ray Tune, chosen on validation, resumable.

One small search is shared by most tests: an ID-only topic dataset, three epochs, two samples
over a grid of d_model in {8, 10} with the base config's n_heads 4, so every sample's d_model=10
trial fails (10 is not divisible by 4) and its d_model=8 twin trains."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from pipelines.cli import main
from pipelines.errors import PipelineError
from pipelines.report import write_report
from pipelines.tuning.results import (
    FAILED,
    FINISHED,
    STOPPED,
    VALID,
    choose_best,
    summary_lines,
    trial_tables,
)
from pipelines.tuning.search import BEST_CONFIG, MARKER, tune_search
from pipelines.tuning.space import read_space
from tests.synthetic import write_topic_dataset

SPACE = "lr_encoder: {loguniform: [1.0e-3, 1.0e-2]}\nmodel: {d_model: {grid: [8, 10]}}\n"
BASE = "model: {n_heads: 4}\n"
FIXED = {"epochs": 3, "batch_size": 16}


def _inputs(root: Path) -> tuple[Path, Path, Path]:
    dataset = write_topic_dataset(root / "dataset", n_users=60, n_items=30, n_topics=3)
    (root / "space.yaml").write_text(SPACE)
    (root / "base.yaml").write_text(BASE)
    return dataset, root / "space.yaml", root / "base.yaml"


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    dataset, space, base = _inputs(root)
    result = tune_search(
        dataset, None, root / "out", "id_only", space=space, config=base,
        train_overrides=FIXED, trials=2, grace_epochs=1,
    )  # fmt: skip
    return root, dataset, result


@pytest.fixture(scope="module")
def best_run(search):
    """`linkedout train --config OUT/best.yaml`: its exit status and run directory."""
    root, dataset, _ = search
    run = root / "best-run"
    code = main(
        ["train", "--dataset", str(dataset), "--out", str(run), "--variant", "id_only",
         "--config", str(root / "out" / BEST_CONFIG)]
    )  # fmt: skip
    return code, run


def test_tune_writes_a_config_that_train_accepts(search, best_run):
    _, _, result = search
    code, run = best_run
    best = result.table.set_index("trial").loc[result.best["trial"]]

    assert code == 0
    metrics = json.loads((run / "metrics.json").read_text())
    # the same settings and seed: the trial's validation figure again (threads aside)
    assert metrics["training"]["best_valid_ndcg@10"] == pytest.approx(best[VALID], abs=1e-3)


def test_the_report_of_a_run_trained_on_the_best_config_shows_the_search(search, best_run):
    _, _, result = search
    _, run = best_run

    write_report(run)

    report = (run / "report.md").read_text()
    assert "chosen by `linkedout tune`" in (" ".join(report.split()))
    assert f"| `{result.best['trial']}` |" in report
    assert (run / "figures" / "search.png").read_bytes().startswith(b"\x89PNG")


def test_a_failing_trial_is_recorded_and_the_search_goes_on(search):
    _, _, result = search
    table = result.table

    failed = table[table["status"] == FAILED]
    assert len(failed) == 2 and set(failed["model.d_model"]) == {10}
    assert all("d_model=10 must be divisible by n_heads=4" in e for e in failed["error"])
    assert set(table[table["model.d_model"] == 8]["status"]) <= {FINISHED, STOPPED}
    assert result.best is not None


def test_the_chosen_trial_has_the_best_validation_figure(search):
    root, _, result = search
    table = pd.read_csv(root / "out" / "trials.csv")

    best_valid = table.loc[table[VALID].idxmax()]
    assert result.best["trial"] == best_valid["trial"]
    assert f"trial {best_valid['trial']}" in (root / "out" / BEST_CONFIG).read_text()


def test_the_test_split_never_enters_the_choice():
    table = pd.DataFrame(
        {
            "trial": ["a", "b", "c", "d"],
            "status": [FINISHED, FINISHED, STOPPED, FAILED],
            VALID: [0.30, 0.20, 0.25, math.nan],
            "test_ndcg@10": [0.10, 0.90, 0.50, math.nan],  # b is best on test
        }
    )

    assert choose_best(table)["trial"] == "a"
    assert choose_best(table.drop(columns="test_ndcg@10"))["trial"] == "a"  # never read


def test_trials_that_never_started_are_failed_rows_with_every_searched_column(tmp_path):
    # what Ray Tune returns when a cluster cancels every trial's actor before it runs
    never_ran = [
        SimpleNamespace(
            config={},
            metrics={},
            metrics_dataframe=None,
            path=str(tmp_path / f"t{i}"),
            error=RuntimeError("The actor never ran - it was cancelled before it started"),
        )  # fmt: skip
        for i in range(2)
    ]
    params = ["lr_encoder", "model.d_model"]

    table, epochs = trial_tables(never_ran, {"lr_encoder": 1e-3}, params)

    assert list(table["status"]) == [FAILED, FAILED] and epochs.empty
    assert table[params].isna().all().all()
    assert choose_best(table) is None
    assert summary_lines(table, params, None)  # the summary still prints


def test_the_base_settings_are_the_first_trial(search):
    _, _, result = search

    baseline = result.table[result.table["baseline"]]
    assert set(baseline["lr_encoder"]) == {1e-3}  # TrainConfig's default, not sampled


def test_a_search_directory_of_other_settings_is_refused(search):
    root, dataset, _ = search

    with pytest.raises(PipelineError, match="other settings"):
        tune_search(
            dataset, None, root / "out", "id_only", space=root / "space.yaml",
            config=root / "base.yaml", train_overrides=FIXED, trials=3, grace_epochs=1,
        )  # fmt: skip


def test_a_directory_that_is_not_a_search_is_left_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")

    with pytest.raises(PipelineError, match="not a search directory"):
        tune_search(tmp_path / "dataset", None, tmp_path, "id_only", trials=1)

    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("lr_encoder: {uniform: [0.1, 0.01]}\n", "low < high"),
        ("epochs: {choice: [1, 2]}\n", "epochs: fixed for the whole search"),
        ("batch_size: {choice: [0, 16]}\n", "batch_size: must be >= 1"),
        ("model: {dropout: {uniform: [0.0, 1.5]}}\n", "model.dropout: must be < 1.0"),
        ("learning_rate: {choice: [1]}\n", "unknown field 'learning_rate'"),
    ],
    ids=["reversed", "fixed_field", "out_of_bounds", "model_bound", "unknown"],
)
def test_a_bad_space_is_one_line_naming_the_file_and_field(tmp_path, text, named):
    space = tmp_path / "space.yaml"
    space.write_text(text)

    with pytest.raises(PipelineError) as info:
        read_space(space)

    assert str(space) in str(info.value) and named in str(info.value)
    assert "\n" not in str(info.value)


def test_a_killed_search_resumes(tmp_path):
    dataset, space, base = _inputs(tmp_path)
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "pipelines.cli", "tune", "--dataset", str(dataset),
        "--out", str(out), "--variant", "id_only", "--space", str(space),
        "--config", str(base), "--trials", "2", "--grace-epochs", "1", "--epochs", "3",
        "--batch-size", "16", "--max-concurrent", "1",
    ]  # fmt: skip
    first = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, start_new_session=True, cwd=Path.cwd()
    )
    try:
        line = first.stdout.readline()
        assert line.startswith("tune: trial 1/4"), line
        ended = line.split()[3]
        _wait_for_saved_state(out, ended)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert not (out / "trials.csv").exists()  # killed before the end

    done = subprocess.run(command, capture_output=True, text=True, cwd=Path.cwd())

    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == 4 and ended in set(table["trial"])  # the same search, continued
    assert table["model.d_model"].notna().all() and table["lr_encoder"].notna().all()
    assert set(table["status"]) <= {FINISHED, STOPPED, FAILED}
    assert (out / BEST_CONFIG).is_file() and (out / MARKER).is_file()
    trial_lines = [line for line in done.stdout.splitlines() if line.startswith("tune: trial")]
    assert trial_lines and not any(ended in line for line in trial_lines)  # it was not rerun


def _wait_for_saved_state(out: Path, trial: str) -> None:
    """Until Ray Tune's experiment state in OUT/search holds `trial` as ended."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for state in (out / "search").glob("experiment_state-*.json"):
            try:
                trials = json.loads(state.read_text())["trial_data"]
            except (OSError, ValueError, KeyError):
                continue  # being written
            for record, _ in trials:
                found = json.loads(record)
                if found["trial_id"] == trial and found["status"] in ("TERMINATED", "ERROR"):
                    return
        time.sleep(0.5)
    raise AssertionError(f"the search never saved its state with {trial} ended")
