"""Integrity faults: bytes that go wrong in the store, inputs that change
after their derived files were written, and commands pointed at data they did not create.

One real extraction of the 12-video demo dataset (tiny model: random weights, no world
knowledge) is copied for each scenario, which then damages or edits the copy the way a disk, a
user or a script would, and runs the commands a user would run next. Every scenario records what
the user saw and how many of the 12 extracted items were lost (no verified row left, or bytes
destroyed)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from featurizer.store import FeatureStore
from pipelines.dataset.ingest import ingest
from pipelines.extraction.extract import extract_catalog
from tests.faults.conftest import assert_one_line_error, run_cli, tree_snapshot
from tests.store_log import commit_entries
from tests.worker_hooks import INVOCATION_LOG_ENV

pytestmark = pytest.mark.slow


@dataclass
class Workspace:
    root: Path
    dataset: Path
    store: Path
    fingerprint: str
    model: str
    preset: str  # the demo's first prompt alone, with the tiny checkpoint

    @property
    def version(self) -> FeatureStore:
        return FeatureStore.open(self.store, self.fingerprint)

    @property
    def items(self) -> list[str]:
        return sorted(p.stem for p in (self.dataset / "videos").glob("v*.mp4"))

    def row_place(self, item: str) -> tuple[Path, int]:
        """The shard object that holds the item's row, and the row's offset in it."""
        version = self.version
        table = version.index_table()
        at = table.column("item").to_pylist().index(item)
        row, offset = table.column("row")[at].as_py(), table.column("offset")[at].as_py()
        return Path(version.where(row)), offset

    def extract(self, argv: tuple[str, ...] = ()) -> tuple[int, str, list[str]]:
        """`linkedout extract` on the workspace: exit code, what it printed (stdout, else the
        error line) and the items it gave to the model."""
        log = self.root / "invocations.log"
        log.unlink(missing_ok=True)
        os.environ[INVOCATION_LOG_ENV] = str(log)
        try:
            result = run_cli(
                ["extract", "--dataset", self.dataset, "--store", self.store]
                + ["--preset", self.preset, *argv]
            )
        finally:
            del os.environ[INVOCATION_LOG_ENV]
        shown = result.stdout.strip() or result.error_line
        called = log.read_text().splitlines() if log.exists() else []
        return result.code, shown, called

    def lost(self) -> int:
        """Extracted items without a verified row."""
        report = self.version.verify()
        good = set(self.version.index()) - set(report.bad_rows)
        return len(set(self.items) - good)


@pytest.fixture(scope="module")
def extracted(
    demo_dataset: Path,
    tmp_path_factory: pytest.TempPathFactory,
    ray_local: None,
    extract_config,
    one_prompt_preset: Path,
) -> Workspace:
    root = tmp_path_factory.mktemp("integrity")
    shutil.copytree(demo_dataset, root / "dataset")
    ingest(root / "dataset")
    summary = extract_catalog(root / "dataset", root / "store", extract_config, progress=False)
    assert summary.extracted == 12 and summary.failed == 0
    return Workspace(
        root,
        root / "dataset",
        root / "store",
        summary.fingerprint,
        extract_config.model,
        str(one_prompt_preset),
    )


@pytest.fixture
def ws(extracted: Workspace, tmp_path: Path) -> Workspace:
    """A copy of the extracted dataset and store, free to damage."""
    shutil.copytree(extracted.dataset, tmp_path / "dataset")
    shutil.copytree(extracted.store, tmp_path / "store")
    return Workspace(
        tmp_path,
        tmp_path / "dataset",
        tmp_path / "store",
        extracted.fingerprint,
        extracted.model,
        extracted.preset,
    )


def _flip_bit(path: Path, offset: int = 4096) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def _verify_line(ws: Workspace, item: str) -> tuple[int, str]:
    result = run_cli(["store", "verify", ws.store / ws.fingerprint])
    lines = [line.strip(" -") for line in result.stdout.splitlines() if f"item {item}:" in line]
    return result.code, lines[0] if lines else result.stdout.strip()


# --- 1. and 4. (issue 15) commands that would destroy data they did not create ----------------


def test_demo_data_into_an_existing_dataset_is_refused(ws: Workspace, fault_report) -> None:
    before = tree_snapshot(ws.dataset)

    result = run_cli(["demo-data", ws.dataset, "--videos", "4", "--users", "10"])

    changed = {k for k, v in tree_snapshot(ws.dataset).items() if before.get(k) != v}
    fault_report.record(
        "linkedout demo-data DIR into an existing dataset",
        survived=result.code == 1 and not changed,
        lost=len(changed),
        message=result.error_line,
    )
    assert_one_line_error(result, str(ws.dataset), "not empty", "--force")
    assert not changed


def test_tiny_model_over_an_existing_checkpoint_is_refused(
    extracted: Workspace, tmp_path: Path, fault_report
) -> None:
    model = tmp_path / "model"
    shutil.copytree(extracted.model, model)
    before = tree_snapshot(model)

    result = run_cli(["tiny-model", model, "--seed", "5"])

    changed = {k for k, v in tree_snapshot(model).items() if before.get(k) != v}
    fault_report.record(
        "linkedout tiny-model DIR over an existing checkpoint",
        survived=result.code == 1 and not changed,
        lost=len(changed),
        message=result.error_line,
    )
    assert_one_line_error(result, str(model), "already holds a checkpoint", "--force")
    assert not changed


# --- 3. inputs that change a row invalidate it ----------------------------------------------


def test_edited_title_reextracts_that_item_only(ws: Workspace, fault_report) -> None:
    titles = ws.dataset / "titles.csv"
    lines = titles.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("v0003,"))
    lines[index] = "v0003,a completely different title"
    titles.write_text("\n".join(lines) + "\n")
    row_before = ws.version.index()["v0003"]

    code, shown, called = ws.extract()

    note = next((line.strip() for line in shown.splitlines() if "re-extracting" in line), shown)
    fault_report.record(
        "titles.csv edited after extraction (one title)",
        survived=code == 0 and called == ["v0003"],
        lost=ws.lost(),
        message=note,
    )
    assert code == 0, shown
    assert called == ["v0003"]
    assert note == "re-extracting 1 item whose prompt changed (its title): v0003"
    assert ws.version.index()["v0003"] != row_before and ws.version.verify().ok


# --- 4. store verify sees silent corruption; 2. extract repairs what verify rejects ----------

DAMAGES = {  # item -> (the fault, what verify says about its row)
    "v0005": ("one flipped bit in a row of a shard", "does not match the checksum"),
    "v0008": ("a row's bytes zeroed in its shard (a lost write)", "does not match the checksum"),
    "v0009": ("index row out of range (999)", "outside the array's rows"),
}


def test_rows_that_fail_their_check_are_named_and_extracted_again(
    ws: Workspace, fault_report
) -> None:
    places = {item: ws.row_place(item) for item in DAMAGES}
    shard, offset = places["v0005"]
    _flip_bit(shard, offset + 100)
    shard, offset = places["v0008"]
    data = bytearray(shard.read_bytes())
    data[offset : offset + 4096] = bytes(4096)
    shard.write_bytes(bytes(data))
    moved = [r for r in ws.version.index_table().to_pylist() if r["item"] == "v0009"]
    commit_entries(ws.version.path, [{**moved[0], "row": 999}])

    said = {item: _verify_line(ws, item) for item in DAMAGES}
    code, shown, called = ws.extract()

    note = next((line.strip() for line in shown.splitlines() if "re-extracting" in line), shown)
    for item, (fault, words) in DAMAGES.items():
        verify_code, line = said[item]
        fault_report.record(
            f"{fault} (store verify)",
            survived=verify_code == 1 and words in line,
            message=line,
        )
        fault_report.record(
            f"{fault} (extract repairs)",
            survived=code == 0 and item in called,
            lost=ws.lost(),
            message=note,
        )
    for item, (_, words) in DAMAGES.items():
        verify_code, line = said[item]
        assert verify_code == 1 and line.startswith(f"item {item}: row") and words in line, line
    assert (
        str(places["v0005"][0]) in said["v0005"][1] and str(places["v0008"][0]) in said["v0008"][1]
    )
    assert code == 0, shown
    assert note == "re-extracting 3 items whose row failed its check: v0005, v0008, v0009"
    assert sorted(called) == sorted(DAMAGES)
    assert ws.version.verify().ok and ws.lost() == 0


def test_deleted_index_fails_verify_and_nothing_overwrites_the_rows(
    ws: Workspace, fault_report
) -> None:
    index = ws.store / ws.fingerprint / "index"
    backup = ws.root / "index.bak"
    shutil.move(index, backup)
    rows_before = tree_snapshot(ws.store / ws.fingerprint / "features.zarr")

    verify = run_cli(["store", "verify", ws.store / ws.fingerprint])
    code, shown, called = ws.extract()
    train = run_cli(
        ["train", "--dataset", ws.dataset, "--store", ws.store]
        + ["--out", ws.root / "run", "--variant", "full", "--epochs", "1"]
    )

    untouched = tree_snapshot(ws.store / ws.fingerprint / "features.zarr") == rows_before
    shutil.move(backup, index)  # the user restores it: every row is still there
    problem = next(
        (line.strip(" -") for line in verify.stdout.splitlines() if "are missing" in line), ""
    )
    for command, failed, message in [
        ("store verify", verify.code == 1 and "FAILED" in verify.stdout, problem),
        ("extract", code == 1 and not called, shown),
        ("train --variant full", train.code == 1, train.error_line),
    ]:
        fault_report.record(
            f"index snapshots deleted beside the shards (linkedout {command})",
            survived=failed and untouched,
            lost=ws.lost(),
            message=message,
        )
    assert verify.code == 1 and "index snapshots are missing" in verify.stdout
    assert code == 1 and "the store is FAILED, not empty" in shown and not called
    assert_one_line_error(train, "index snapshots are missing")
    assert untouched and ws.lost() == 0


# --- 6. smaller ones ------------------------------------------------------------------------


def test_symlink_loop_in_videos_is_a_failure_row(ws: Workspace, fault_report) -> None:
    (ws.dataset / "videos" / "loop.mp4").symlink_to("loop.mp4")

    code, shown, called = ws.extract()

    failures = {r["item"]: r["error"] for r in ws.version.failures_table().to_pylist()}
    fault_report.record(
        "symlink loop in videos/ (loop.mp4 -> loop.mp4)",
        survived=code == 0 and "loop" in failures,
        lost=ws.lost(),
        message=f"failure row: {failures.get('loop', shown)}",
    )
    assert code == 0, shown
    assert failures == {"loop": "loop.mp4: a symlink loop (it never reaches a file)"}
    assert called == [] and ws.lost() == 0


def test_pairs_csv_edited_after_ingest_stops_training(ws: Workspace, fault_report) -> None:
    pairs = ws.dataset / "pairs.csv"
    pairs.write_text(
        pairs.read_text() + "late_user,v0001,1\nlate_user,v0002,2\nlate_user,v0003,3\n"
    )

    result = run_cli(
        ["train", "--dataset", ws.dataset, "--out", ws.root / "run", "--variant", "id_only"]
    )

    fault_report.record(
        "pairs.csv edited after ingest (linkedout train)",
        survived=result.code == 1,
        message=result.error_line,
    )
    assert_one_line_error(result, "pairs.csv changed", "linkedout ingest")


def test_report_on_a_run_without_config_is_refused(tmp_path: Path, fault_report) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text('{"variant": "full", "test": {}}')

    result = run_cli(["report", run])

    fault_report.record(
        "linkedout report RUN without config.json",
        survived=result.code == 1 and not (run / "report.md").exists(),
        message=result.error_line,
    )
    assert_one_line_error(result, "no config.json")
    assert not (run / "report.md").exists()


def test_corrupt_run_config_json_names_the_file(tmp_path: Path, fault_report) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"variant": "full",')

    result = run_cli(["evaluate", run])

    fault_report.record(
        "corrupt RUN/config.json (linkedout evaluate)",
        survived=result.code == 1 and str(run / "config.json") in result.error_line,
        message=result.error_line,
    )
    assert_one_line_error(result, str(run / "config.json"), "not valid JSON")


def test_corrupt_zarr_json_names_the_file(ws: Workspace, fault_report) -> None:
    meta = ws.store / ws.fingerprint / "features.zarr" / "features" / "zarr.json"
    meta.write_text('{"zarr_format": 3, "shape": [')

    result = run_cli(["store", "info", ws.store])

    fault_report.record(
        "corrupt features.zarr/features/zarr.json (linkedout store info)",
        survived=result.code == 1 and str(meta) in result.error_line,
        message=result.error_line,
    )
    assert_one_line_error(result, str(meta), "unreadable")


def test_current_naming_a_path_outside_the_store_is_refused(ws: Workspace, fault_report) -> None:
    outside = ws.root / "elsewhere"
    shutil.copytree(ws.store / ws.fingerprint, outside)
    (ws.store / "CURRENT").write_text("../elsewhere\n")

    result = run_cli(["store", "info", ws.store])

    fault_report.record(
        "CURRENT names ../elsewhere (linkedout store info)",
        survived=result.code == 1,
        message=result.error_line,
    )
    assert_one_line_error(result, "'../elsewhere'", "not a version directory directly under")
