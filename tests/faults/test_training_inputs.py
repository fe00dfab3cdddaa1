"""`linkedout train` reads rows only from a store that would verify, never trains a model of one
store version further (or re-exports its vectors) on another, and refuses a prompt-bank variant
on a store without a bank: each refused in one line naming the store, before anything is
written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from featurizer.store import FeatureStore
from tests.faults.conftest import CliResult, assert_one_line_error, run_cli, tree_snapshot
from tests.store_log import commit_entries
from tests.synthetic import write_topic_dataset, write_topic_store

ITEMS = [f"i{i:03d}" for i in range(24)]
TINY_MODEL = (
    "model: {d_model: 8, n_queries_old: 2, n_queries_new: 1, gate_hidden: 8, n_blocks: 1}\n"
)


def _said(result: CliResult) -> str:
    """The line the user saw: the error, else the summary of the run trained."""
    trained = [line for line in result.stdout.splitlines() if line.startswith("trained ")]
    return result.error_line or (trained or [f"exit {result.code}"])[0]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A dataset, a store, a tiny training config and one finished `full` run (run/)."""
    root = tmp_path_factory.mktemp("training-inputs")
    write_topic_dataset(root / "dataset", n_users=40, n_items=24, n_topics=3)
    write_topic_store(root / "store", ITEMS, n_topics=3)
    (root / "tiny.yaml").write_text("batch_size: 64\n" + TINY_MODEL)
    result = run_cli(_train(root, root / "store", root / "run"))
    assert result.code == 0, result.stderr
    return root


def _train(root: Path, store: Path, out: Path, *extra: object) -> list[object]:
    return [
        "train", "--dataset", root / "dataset", "--store", store, "--out", out,
        "--variant", "full", "--config", root / "tiny.yaml", "--epochs", 1, *extra,
    ]  # fmt: skip


def _store_copy(workspace: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(workspace / "store", tmp_path / "store"))


def _two_items_on_one_row(store: Path) -> tuple[str, str]:
    """Commit an entry in which the second item points at the first item's row (its offset
    and checksum too): `store verify` calls that FAILED."""
    version = FeatureStore.open(store)
    first, second = version.index_table().to_pylist()[:2]
    commit_entries(
        version.path, [{**second, **{k: first[k] for k in ("row", "offset", "checksum")}}]
    )
    return first["item"], second["item"]


def _an_item_without_its_source(store: Path) -> str:
    """Commit an entry whose item lacks its source identity (the video's sha256): `store
    verify` calls that FAILED, while the row itself still reads and checks."""
    version = FeatureStore.open(store)
    entry = version.index_table().to_pylist()[0]
    commit_entries(version.path, [{**entry, "source_sha256": None}])
    return entry["item"]


def test_train_refuses_a_store_that_would_not_verify(workspace, tmp_path, fault_report):
    store = _store_copy(workspace, tmp_path)
    _two_items_on_one_row(store)
    verify = run_cli(["store", "verify", store])
    out = tmp_path / "run"

    result = run_cli(_train(workspace, store, out))

    fault_report.record(
        "train on a store that `store verify` calls FAILED (two items on one row)",
        survived=verify.code == 1 and result.code == 1 and not out.exists(),
        message=_said(result),
    )
    assert verify.code == 1 and "FAILED" in verify.stdout
    assert_one_line_error(result, str(store), "would not verify", "--no-verify-store")
    assert not out.exists()


def test_no_verify_store_trains_over_a_store_that_would_not_verify(
    workspace, tmp_path, fault_report
):
    store = _store_copy(workspace, tmp_path)
    _an_item_without_its_source(store)
    out = tmp_path / "run"
    assert run_cli(["store", "verify", store]).code == 1

    result = run_cli(_train(workspace, store, out, "--no-verify-store"))

    recorded = json.loads((out / "config.json").read_text())["store"] if out.is_dir() else {}
    fault_report.record(
        "train --no-verify-store on a store that would not verify",
        survived=result.code == 0 and recorded.get("verified") is False,
        message=_said(result),
    )
    assert result.code == 0, result.stderr
    assert recorded["verified"] is False  # config.json says the store went unchecked


def test_a_run_is_not_resumed_or_reexported_against_another_store_version(
    workspace, tmp_path, fault_report
):
    run = Path(shutil.copytree(workspace / "run", tmp_path / "run"))
    store = _store_copy(workspace, tmp_path)
    trained_on = FeatureStore.open(store).fingerprint
    write_topic_store(store, ITEMS, n_topics=3, model="synthetic-retrained")  # the new CURRENT
    now = FeatureStore.open(store).fingerprint
    before = tree_snapshot(run)

    result = run_cli(_train(workspace, store, run))

    unchanged = tree_snapshot(run) == before
    fault_report.record(
        "rerun a finished run after CURRENT moved to another store version of the same shape",
        survived=result.code == 1 and unchanged,
        lost=0 if unchanged else 1,
        message=result.error_line,
    )
    assert_one_line_error(result, trained_on, now, "--fresh")
    assert unchanged


def test_prompt_bank_variant_on_a_store_without_a_bank_is_refused(
    workspace, tmp_path, fault_report
):
    out = tmp_path / "run"
    argv = _train(workspace, workspace / "store", out)
    argv[argv.index("--variant") + 1] = "full_prompt_bank"

    result = run_cli(argv)

    fault_report.record(
        "full_prompt_bank on a store without a prompt bank",
        survived=result.code == 1 and not out.exists(),
        message=_said(result),
    )
    assert_one_line_error(result, str(workspace / "store"), "prompt bank", "prompts")
    assert not out.exists()
