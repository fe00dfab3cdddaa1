"""Faults on the wire to an object store (an S3 server on loopback, behind a proxy that breaks
the wire on demand): the server gone mid-write, 503 SlowDown answers (now and then, and for
good), a wrong credential, a missing bucket. Each is one line naming the store (and the item,
where one was being written); retries are bounded, with backoff; nothing published is lost;
after a rerun the store verifies. Extraction runs in this process (Ray on loopback, started
with the proxy as its endpoint); the tiny checkpoint has random weights."""

from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from featurizer.store import FeatureStore
from pipelines.errors import PipelineError
from pipelines.extraction.extract import extract_catalog
from tests.s3 import Wire, access_key, check_signatures, environment
from tests.worker_hooks import DELAY_ENV, INVOCATION_LOG_ENV

pytestmark = pytest.mark.slow


@pytest.fixture
def short_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lease its writer could not release (the store was gone) lapses in seconds, not 30."""
    import featurizer.store.lease as lease

    monkeypatch.setattr(lease, "LEASE_SECONDS", 3.0)


def _dataset(demo_dataset: Path, root: Path) -> Path:
    return Path(shutil.copytree(demo_dataset, root / "dataset"))


def _published(version: str) -> dict[str, int]:
    """item -> the checksum of its committed row (its bytes, bound to it: compaction may move
    a row, never change it)."""
    table = FeatureStore(version).index_table()
    return {r["item"]: r["checksum"] for r in table.to_pylist()}


def _break_mid_run(
    wire: Wire, dataset: Path, store: str, config, root: Path, breaks, mends
) -> tuple[str, dict, dict]:
    """Extract in a thread; once the model has run on 8 videos (the second group), `breaks()`
    the wire; after the run stops, `mends()` it. Returns (the run's error, the index a reader saw
    just before the break, the index after the mend)."""
    calls = root / "calls.log"
    box: dict = {}

    def run() -> None:
        try:
            box["summary"] = extract_catalog(dataset, store, config, progress=False)
        except PipelineError as exc:
            box["error"] = str(exc)

    with environment({INVOCATION_LOG_ENV: str(calls), DELAY_ENV: "0.5"}):
        thread = threading.Thread(target=run)
        thread.start()
        while thread.is_alive():
            if calls.exists() and len(calls.read_text().split()) >= 8:
                break
            time.sleep(0.05)
        version = f"{store}/{config.fingerprint()}"
        before = _published(version)
        breaks()
        thread.join(300)
    mends()
    time.sleep(3.5)  # the run's lease, which it could not release, lapses
    return box.get("error", ""), before, _published(version)


def test_the_store_going_away_mid_write_is_one_line_naming_every_item_left_and_loses_nothing(
    wire: Wire, demo_dataset: Path, extract_config, tmp_path: Path, short_lease, fault_report
) -> None:
    dataset = _dataset(demo_dataset, tmp_path)
    store = f"s3://{wire.bucket}/gone"

    error, before, after = _break_mid_run(
        wire, dataset, store, extract_config, tmp_path, wire.proxy.stop, wire.proxy.start
    )
    rerun = extract_catalog(dataset, store, extract_config, progress=False)
    lost = sorted(
        item
        for item, row in before.items()
        if _published(f"{store}/{extract_config.fingerprint()}").get(item) != row
    )
    verified = FeatureStore.open(f"{store}/{extract_config.fingerprint()}").verify()

    fault_report.record(
        "S3 server gone mid-write (connections refused), then back",
        survived=bool(error) and not lost and verified.ok,
        lost=len(lost),
        message=error,
    )
    assert f"feature store {store}/" in error and "\n" not in error
    assert "cannot reach the object store at" in error and "retries)" in error
    named = re.search(r"(\d+) items? not committed: v\d{4}", error)  # the items left, counted
    assert named and int(named.group(1)) == 12 - len(after)
    assert all(after.get(item) == row for item, row in before.items())
    assert rerun.failed == 0 and not lost and verified.ok and verified.n_rows == 12


def test_slow_down_answers_now_and_then_are_retried_with_backoff(
    wire: Wire, demo_dataset: Path, extract_config, tmp_path: Path, fault_report
) -> None:
    dataset = _dataset(demo_dataset, tmp_path)
    store = f"s3://{wire.bucket}/slow"
    wire.proxy.mode, answered = "every:5", wire.proxy.answered_503
    try:
        summary = extract_catalog(dataset, store, extract_config, progress=False)
    finally:
        wire.proxy.mode = "forward"
    verified = FeatureStore.open(f"{store}/{extract_config.fingerprint()}").verify()

    fault_report.record(
        "S3 answers 503 SlowDown to every 5th request",
        survived=summary.extracted == 12 and verified.ok,
        message=f"{wire.proxy.answered_503 - answered} answers 503, retried; {summary.describe()}",
    )
    assert wire.proxy.answered_503 > answered
    assert (summary.extracted, summary.failed) == (12, 0) and verified.ok


def test_slow_down_for_good_stops_the_run_in_one_line_and_loses_nothing(
    wire: Wire, demo_dataset: Path, extract_config, tmp_path: Path, short_lease, fault_report
) -> None:
    dataset = _dataset(demo_dataset, tmp_path)
    store = f"s3://{wire.bucket}/slowdown"

    def slow_down() -> None:
        wire.proxy.mode = "slowdown"

    def mend() -> None:
        wire.proxy.mode = "forward"

    started = time.monotonic()
    error, before, after = _break_mid_run(
        wire, dataset, store, extract_config, tmp_path, slow_down, mend
    )
    seconds = time.monotonic() - started
    rerun = extract_catalog(dataset, store, extract_config, progress=False)
    verified = FeatureStore.open(f"{store}/{extract_config.fingerprint()}").verify()
    lost = sorted(item for item, row in before.items() if after.get(item) != row)

    fault_report.record(
        "S3 answers 503 SlowDown to every request, mid-run",
        survived=bool(error) and not lost and verified.ok,
        lost=len(lost),
        message=error,
    )
    assert f"feature store {store}/" in error and "\n" not in error
    assert "answered 503" in error and "retries)" in error
    assert seconds < 120  # bounded retries: the run stops, it does not retry for ever
    assert not lost and rerun.failed == 0 and verified.ok and verified.n_rows == 12


def test_a_wrong_credential_is_one_line_without_the_credential(
    wire: Wire, demo_dataset: Path, extract_config, tmp_path: Path, fault_report
) -> None:
    endpoint = wire.s3.endpoint  # type: ignore[attr-defined]
    key, wrong = access_key(endpoint)
    check_signatures(endpoint, after=b"0")
    try:
        with environment(wire.s3.env(AWS_ACCESS_KEY_ID=key[0], AWS_SECRET_ACCESS_KEY=wrong)):  # type: ignore[attr-defined]
            with pytest.raises(PipelineError) as info:
                extract_catalog(
                    _dataset(demo_dataset, tmp_path), f"s3://{wire.bucket}/denied", extract_config
                )
    finally:
        check_signatures(endpoint, after=b"inf")
    message = str(info.value)

    fault_report.record(
        "S3 with a wrong secret access key", survived="access denied" in message, message=message
    )
    assert "access denied" in message and "check AWS_ACCESS_KEY_ID" in message
    assert "\n" not in message
    assert f"s3://{wire.bucket}/denied" in message
    for secret in (*key, wrong):
        assert secret not in message


def test_a_missing_bucket_is_one_line(
    wire: Wire, demo_dataset: Path, extract_config, tmp_path: Path, fault_report
) -> None:
    with pytest.raises(PipelineError) as info:
        extract_catalog(
            _dataset(demo_dataset, tmp_path), "s3://no-such-bucket/store", extract_config
        )
    message = str(info.value)

    fault_report.record(
        "S3 bucket that does not exist", survived="does not exist" in message, message=message
    )
    assert (
        "s3://no-such-bucket/store" in message
        and "bucket 'no-such-bucket' does not exist" in message
    )
    assert "\n" not in message
