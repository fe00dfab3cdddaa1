"""Training faults: `linkedout train` killed with SIGKILL in the middle of an epoch resumes from
its checkpoint and ends with the metrics of an uninterrupted run; training and evaluation
against a store that lacks some items say which.

The store is a real feature store with synthetic features (topic-coloured noise): training
needs rows of the right shape, not a video model. The dataset is generated (2000 users, 60 items
in 4 topics) so that an epoch lasts long enough to be interrupted."""

from __future__ import annotations

import contextlib
import io
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from featurizer.config import ExtractorConfig
from featurizer.store import FeatureStore, MissingItemsError, set_current
from pipelines.training.run import TrainResult, train_run
from tests.faults.conftest import CliProcess, kill_session, run_cli, wait_for
from tests.synthetic import write_topic_dataset

pytestmark = pytest.mark.slow

N_USERS, N_ITEMS, N_TOPICS = 2000, 60, 4
EPOCHS = 12
NO_FEATURES = ("i000", "i001")  # never extracted
FAILED = "i002"  # its extraction failed
SEED = 7


@dataclass
class TrainWorkspace:
    root: Path
    dataset: Path
    store: Path
    reference: TrainResult
    reference_stdout: str


def _dataset(root: Path) -> Path:
    return write_topic_dataset(
        root, n_users=N_USERS, n_items=N_ITEMS, n_topics=N_TOPICS, per_user=(5, 10), user_digits=4
    )


def _store(root: Path) -> Path:
    config = ExtractorConfig(model="synthetic-fault-suite", layers=(0, 4), k_tokens=6, new_tokens=2)
    version = FeatureStore.create_or_open(root, config, hidden_size=8)
    rng = np.random.default_rng(1)
    items = [f"i{i:03d}" for i in range(N_ITEMS)]
    have = [i for i in items if i not in NO_FEATURES and i != FAILED]
    with version.writer() as writer:
        rows = writer.allocate(len(have))
        row_writer = writer.row_writer()
        for item, row in zip(have, rows, strict=True):
            features = rng.standard_normal((2, 6, 8)).astype(np.float16)
            features[:, :, int(item[1:]) % N_TOPICS] += 3.0
            row_writer.write(row, features, item=item)
            writer.commit(item, row, f"sha-{item}", n_old=4, n_new=2)
        writer.fail(FAILED, "decode", f"{FAILED}.mp4: cannot decode: empty file (0 bytes)")
    set_current(root, config.fingerprint())
    return root


@contextlib.contextmanager
def _one_thread():
    """The CLI processes below run with OMP_NUM_THREADS=1: the same reduction order here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> TrainWorkspace:
    root = tmp_path_factory.mktemp("training")
    dataset, store = _dataset(root / "dataset"), _store(root / "store")
    out = io.StringIO()
    with _one_thread(), contextlib.redirect_stdout(out):
        reference = train_run(dataset, store, root / "reference", "full", epochs=EPOCHS)
    return TrainWorkspace(root, dataset, store, reference, out.getvalue())


def test_training_killed_mid_epoch_resumes_to_the_same_metrics(
    ws: TrainWorkspace, cli_processes, fault_report
) -> None:
    run = ws.root / "killed"
    checkpoint = run / "checkpoint.pt"
    argv = ["train", "--dataset", ws.dataset, "--store", ws.store, "--out", run]
    process = CliProcess(
        [*argv, "--epochs", EPOCHS], ws.root / "logs", "train", OMP_NUM_THREADS="1"
    )
    cli_processes.append(process)
    wait_for(lambda: checkpoint.exists() or process.poll() is not None, 300, 0.01, "a checkpoint")
    time.sleep(random.Random(SEED).uniform(0.0, 0.15))  # into the next epoch
    finished_first = process.poll() is not None
    kill_session(process.sid)
    process.kill()
    epoch = int(torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"])

    out = io.StringIO()
    with _one_thread(), contextlib.redirect_stdout(out):
        resumed = train_run(ws.dataset, ws.store, run, "full", epochs=EPOCHS)
    epochs_printed = [
        int(line.split("epoch")[1].split(":")[0])
        for line in out.getvalue().splitlines()
        if line.startswith("full epoch")
    ]
    got, want = resumed.metrics["test"]["overall"], ws.reference.metrics["test"]["overall"]
    same = all(abs(got[k] - want[k]) <= 1e-6 for k in want if k != "n")
    fault_report.record(
        f"training SIGKILLed mid-epoch (after the epoch {epoch} checkpoint), rerun",
        survived=same and not finished_first and epochs_printed[:1] == [epoch + 1],
        message=f"resumed at epoch {epochs_printed[0] if epochs_printed else '?'}; "
        + resumed.describe().splitlines()[0].split(" (")[0]
        + f"; test NDCG@10 {got['ndcg@10']:.4f} (uninterrupted: {want['ndcg@10']:.4f})",
    )
    assert not finished_first, "training finished before it could be killed"
    assert 1 <= epoch < ws.reference.epochs_run
    assert epochs_printed[:1] == [epoch + 1]  # resumed, not restarted
    assert resumed.epochs_run == ws.reference.epochs_run
    assert resumed.best_epoch == ws.reference.best_epoch
    assert same, (got, want)


def test_training_on_a_store_missing_items_says_which(ws: TrainWorkspace, fault_report) -> None:
    line = next(
        (ln for ln in ws.reference_stdout.splitlines() if "have no features" in ln), ""
    ).strip()
    missing = json.loads((ws.reference.run_dir / "config.json").read_text())["missing_features"]
    named = all(item in line for item in (*NO_FEATURES, FAILED))
    fault_report.record(
        "training on a store missing items",
        survived=bool(line) and missing["total"] == 3,
        message=line + ("" if named else "  [names no item: see the report]"),
    )
    assert missing == {"total": 3, "extraction_failed": 1, "not_extracted": 2}
    assert "3 of 60 items have no features (1 failed extraction, 2 without a video" in line
    if not named:
        pytest.xfail("pipelines/training counts the items without features but names none")


def test_reading_items_the_store_lacks_names_them(ws: TrainWorkspace, fault_report) -> None:
    version = FeatureStore.open(ws.store)
    with pytest.raises(MissingItemsError) as info:
        version.read(["i010", *NO_FEATURES, FAILED])
    message = str(info.value)
    fault_report.record("reading features of items the store lacks", survived=True, message=message)
    assert "3 item(s) not in the index: i000, i001, i002" in message
    assert "\n" not in message


def test_evaluate_a_run_whose_store_lost_items(
    ws: TrainWorkspace, tmp_path: Path, fault_report
) -> None:
    """Evaluation reads the run's saved item vectors, not the store: a store that lost rows
    since (here: moved away entirely) changes nothing."""
    moved = tmp_path / "store-moved"
    ws.store.rename(moved)
    try:
        result = run_cli(["evaluate", ws.reference.run_dir])
    finally:
        moved.rename(ws.store)
    line = result.stdout.splitlines()[0] if result.stdout else result.error_line
    fault_report.record(
        "evaluate a run after its store lost items", survived=result.code == 0, message=line
    )
    assert result.code == 0, result.stderr
    metrics = json.loads((ws.reference.run_dir / "metrics.json").read_text())
    assert metrics["test"]["overall"] == pytest.approx(ws.reference.metrics["test"]["overall"])
