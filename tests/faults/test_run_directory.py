"""`linkedout train --out DIR` deletes only what it created. A run directory is recognised by
the marker training writes into it (pipelines/training/run_dir.py), never by a config.json; `--fresh`
removes only the run's own files, refuses a directory that is not a run and never touches the
working directory or a parent of it; a run is replaced only after the new run has succeeded."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from featurizer.store import FeatureStore
from pipelines.training.run_dir import RUN_MARKER, STAGING_DIR
from tests.faults.conftest import CliResult, assert_one_line_error, run_cli, tree_snapshot
from tests.synthetic import write_topic_dataset, write_topic_store

TINY_MODEL = (
    "model: {d_model: 8, n_queries_old: 2, n_queries_new: 1, gate_hidden: 8, n_blocks: 1}\n"
)


def _said(result: CliResult) -> str:
    """The line the user saw: the error, else the summary of the run trained."""
    trained = [line for line in result.stdout.splitlines() if line.startswith("trained ")]
    return result.error_line or (trained or [f"exit {result.code}"])[0]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A dataset, a store, a tiny training config and one finished `full` run (run/), for the
    tests to copy."""
    root = tmp_path_factory.mktemp("run-directory")
    write_topic_dataset(root / "dataset", n_users=40, n_items=24, n_topics=3)
    write_topic_store(root / "store", [f"i{i:03d}" for i in range(24)], n_topics=3)
    (root / "tiny.yaml").write_text("batch_size: 64\n" + TINY_MODEL)
    result = run_cli([*_train(root, root / "run"), "--epochs", 1])
    assert result.code == 0, result.stderr
    return root


def _train(root: Path, out: Path | str, *extra: object) -> list[object]:
    return [
        "train",
        "--dataset",
        root / "dataset",
        "--store",
        root / "store",
        "--out",
        out,
        "--variant",
        "full",
        "--config",
        root / "tiny.yaml",
        *extra,
    ]


def _copy_run(workspace: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(workspace / "run", tmp_path / "run"))


def _project(path: Path) -> Path:
    """A user's project folder that happens to hold a config.json of its own."""
    (path / "src").mkdir(parents=True)
    (path / "src" / "main.py").write_text("print('hello')\n")
    (path / "NOTES.md").write_text("my notes\n")
    (path / "config.json").write_text(json.dumps({"name": "my project", "debug": True}))
    return path


def test_fresh_refuses_a_directory_that_is_not_a_run(workspace, tmp_path, fault_report):
    project = _project(tmp_path / "project")
    before = tree_snapshot(project)

    result = run_cli([*_train(workspace, project, "--fresh"), "--epochs", 1])

    unchanged = tree_snapshot(project) == before
    fault_report.record(
        "train --fresh into a project folder holding a config.json",
        survived=result.code == 1 and unchanged,
        lost=0 if unchanged else len(before),
        message=result.error_line,
    )
    assert_one_line_error(result, str(project), "not a run directory")
    assert unchanged


def test_train_refuses_to_overwrite_a_foreign_config_json(workspace, tmp_path, fault_report):
    project = _project(tmp_path / "project")
    before = tree_snapshot(project)

    result = run_cli([*_train(workspace, project), "--epochs", 1])

    unchanged = tree_snapshot(project) == before
    fault_report.record(
        "train (no --fresh) into a folder holding a foreign config.json",
        survived=result.code == 1 and unchanged,
        lost=0 if unchanged else 1,
        message=result.error_line,
    )
    assert_one_line_error(result, str(project), "not a run directory")
    assert unchanged


@pytest.mark.parametrize("fresh", [False, True], ids=["resume", "fresh"])
def test_a_config_json_holding_a_list_is_refused_in_one_line(
    workspace, tmp_path, fault_report, fresh
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("[1, 2, 3]\n")
    before = tree_snapshot(out)

    result = run_cli([*_train(workspace, out, *(["--fresh"] if fresh else [])), "--epochs", 1])

    unchanged = tree_snapshot(out) == before
    fault_report.record(
        f"train {'--fresh ' if fresh else ''}into a directory whose config.json is a JSON list",
        survived=result.code == 1 and unchanged and "AttributeError" not in result.stderr,
        message=result.error_line,
    )
    assert_one_line_error(result, str(out))
    assert "AttributeError" not in result.stderr
    assert unchanged


@pytest.mark.parametrize(("out", "cwd"), [(".", "run"), ("..", "run/notes")], ids=["dot", "parent"])
def test_fresh_never_touches_the_working_directory_or_a_parent_of_it(
    workspace, tmp_path, monkeypatch, fault_report, out, cwd
):
    run = _copy_run(workspace, tmp_path)
    (run / "notes").mkdir()
    (run / "notes" / "todo.txt").write_text("keep me\n")
    monkeypatch.chdir(tmp_path / cwd)
    before = tree_snapshot(run)

    result = run_cli([*_train(workspace, out, "--fresh"), "--epochs", 1])

    unchanged = tree_snapshot(run) == before
    fault_report.record(
        f"train --fresh --out {out} (a run directory that is or holds the working directory)",
        survived=result.code == 1 and unchanged,
        lost=0 if unchanged else 1,
        message=result.error_line,
    )
    assert_one_line_error(result, "working directory")
    assert unchanged


def test_fresh_replaces_only_the_runs_own_files(workspace, tmp_path, fault_report):
    run = _copy_run(workspace, tmp_path)
    (run / "NOTES.md").write_text("what I tried\n")
    (run / "analysis").mkdir()
    (run / "analysis" / "plot.py").write_text("import numpy\n")
    old_config = json.loads((run / "config.json").read_text())

    result = run_cli([*_train(workspace, run, "--fresh"), "--epochs", 1])

    kept = (run / "NOTES.md").is_file() and (run / "analysis" / "plot.py").is_file()
    fault_report.record(
        "train --fresh over a run holding the user's own files",
        survived=result.code == 0 and kept,
        lost=0 if kept else 2,
        message=_said(result),
    )
    assert result.code == 0, result.stderr
    assert kept
    marker = json.loads((run / RUN_MARKER).read_text())
    assert marker["kind"] == "linkedout run" and marker["variant"] == "full"
    new_config = json.loads((run / "config.json").read_text())
    assert new_config["created_at"] > old_config["created_at"]  # a new run, not the old one
    assert not (run / STAGING_DIR).exists()


def _damage_a_row(store: Path) -> str:
    """Flip the bytes of one committed row where its shard holds it: reading it fails its
    checksum, while the index and the arrays' metadata stay as they were. Returns its item."""
    version = FeatureStore.open(store)
    index = version.index_table()
    item, row, offset = (index.column(name)[0].as_py() for name in ("item", "row", "offset"))
    shard = Path(version.where(row))
    data = bytearray(shard.read_bytes())
    data[offset : offset + 64] = bytes(b ^ 0xFF for b in data[offset : offset + 64])
    shard.write_bytes(bytes(data))
    return item


def test_a_refused_fresh_run_leaves_the_previous_run_as_it_was(workspace, tmp_path, fault_report):
    run = _copy_run(workspace, tmp_path)
    store = Path(shutil.copytree(workspace / "store", tmp_path / "store"))
    _damage_a_row(store)
    before = tree_snapshot(run)
    argv = _train(workspace, run, "--fresh")
    argv[argv.index("--store") + 1] = store

    result = run_cli([*argv, "--epochs", 1])

    unchanged = tree_snapshot(run) == before
    fault_report.record(
        "train --fresh over a finished run, refused while reading a damaged store",
        survived=result.code == 1 and unchanged,
        lost=0 if unchanged else 1,
        message=result.error_line,
    )
    assert_one_line_error(result, "checksum")
    assert unchanged  # the old run's files, and no staging area left behind


def test_fresh_never_removes_a_staging_directory_it_did_not_make(workspace, tmp_path, fault_report):
    run = _copy_run(workspace, tmp_path)
    (run / STAGING_DIR).mkdir()
    (run / STAGING_DIR / "draft.txt").write_text("someone else's\n")
    before = tree_snapshot(run)

    result = run_cli([*_train(workspace, run, "--fresh"), "--epochs", 1])

    unchanged = tree_snapshot(run) == before
    fault_report.record(
        f"train --fresh over a run holding a {STAGING_DIR}/ that training did not make",
        survived=result.code == 1 and unchanged,
        lost=0 if unchanged else 1,
        message=result.error_line,
    )
    assert_one_line_error(result, str(run / STAGING_DIR), "not removing it")
    assert unchanged


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Callable[[int], Path]]:
    """Mounts a tmpfs of a given size in bytes (root or CAP_SYS_ADMIN; skipped with the reason
    otherwise), unmounted at teardown."""
    mounts: list[Path] = []

    def mount(size: int) -> Path:
        path = tmp_path / f"small-disk-{len(mounts)}"
        path.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs (needs root or CAP_SYS_ADMIN): {done.stderr}")
        mounts.append(path)
        return path

    yield mount
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_fresh_run_that_fails_midway_leaves_the_previous_run_as_it_was(
    workspace, small_disk, fault_report
):
    # room for the old run and 64 KiB more: the new run's checkpoint does not fit beside it
    size = sum(p.stat().st_size for p in (workspace / "run").iterdir()) + (64 << 10)
    run = Path(shutil.copytree(workspace / "run", small_disk(size) / "run"))
    before = tree_snapshot(run)

    result = run_cli([*_train(workspace, run, "--fresh"), "--epochs", 1])

    unchanged = tree_snapshot(run) == before
    fault_report.record(
        "train --fresh over a finished run, the disk full halfway through the new run",
        survived=result.code == 1 and unchanged,
        lost=0 if unchanged else 1,
        message=result.error_line,
    )
    assert_one_line_error(result, "No space left on device")
    assert unchanged  # the old run's files, and no staging area left behind


def test_a_new_run_that_fails_before_its_first_checkpoint_leaves_nothing(
    workspace, small_disk, fault_report
):
    disk = small_disk(64 << 10)  # config.json fits, the first checkpoint does not
    run = disk / "run"

    result = run_cli([*_train(workspace, run), "--epochs", 1])

    left = sorted(str(p.relative_to(disk)) for p in disk.rglob("*"))
    fault_report.record(
        "train into a new directory, the disk full before the first checkpoint",
        survived=result.code == 1 and not left,
        message=result.error_line,
    )
    assert_one_line_error(result, "No space left on device")
    assert not left  # no run directory, no config.json


def test_a_run_written_before_the_marker_is_recognised_and_marked(
    workspace, tmp_path, fault_report
):
    run = _copy_run(workspace, tmp_path)
    (run / RUN_MARKER).unlink()  # as a run trained before the marker existed

    result = run_cli([*_train(workspace, run), "--epochs", 1])

    marked = (run / RUN_MARKER).is_file()
    fault_report.record(
        "rerun into a run directory written before the run marker existed",
        survived=result.code == 0 and marked,
        message=_said(result),
    )
    assert result.code == 0, result.stderr
    assert json.loads((run / RUN_MARKER).read_text())["variant"] == "full"
