"""A refused `linkedout train` changes nothing on disk: every check (the run directory's
variant, the checkpoint's configuration, the settings) runs before the first write."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.conftest import assert_one_line_error, run_cli
from tests.synthetic import write_topic_dataset


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("refused")
    dataset = write_topic_dataset(root / "dataset", n_users=40, n_items=24, n_topics=3)
    run = root / "run"
    result = run_cli(
        ["train", "--dataset", dataset, "--out", run, "--variant", "id_only", "--epochs", 1]
    )
    assert result.code == 0, result.stderr
    return dataset, run


def _snapshot(run: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(run.iterdir())}


@pytest.mark.parametrize(
    ("fault", "extra", "named"),
    [
        (
            "train another variant into a finished run",
            ["--variant", "popularity"],
            "variant id_only",
        ),
        (
            "resume a run with another configuration",
            ["--variant", "id_only", "--lr-head", "0.5"],
            "lr_head",
        ),
        (
            "train with a bad setting over a finished run",
            ["--variant", "id_only", "--seed", "-1"],
            "seed",
        ),
    ],
    ids=["other_variant", "other_configuration", "bad_setting"],
)
def test_refused_train_leaves_the_run_directory_as_it_was(
    finished_run, fault_report, fault, extra, named
):
    dataset, run = finished_run
    before = _snapshot(run)

    result = run_cli(["train", "--dataset", dataset, "--out", run, "--epochs", 2, *extra])

    line = assert_one_line_error(result, named)
    unchanged = _snapshot(run) == before
    fault_report.record(fault, survived=unchanged, lost=0 if unchanged else 1, message=line)
    assert unchanged
