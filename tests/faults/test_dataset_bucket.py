"""Faults on the wire to a dataset in a bucket (the S3 server on loopback, behind a proxy that
breaks the wire on demand; the feature store is local, so the dataset is all that crosses the
wire): a video deleted after the listing, the server gone while the workers fetch videos, 503
SlowDown answers now and then, a wrong credential. A missing video is its failure row; the
others stop the run in one line that names what is left, or are retried; nothing committed is
lost and a rerun completes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from featurizer.store import FeatureStore
from pipelines.dataset import catalog as catalog_module
from pipelines.errors import PipelineError
from pipelines.extraction.extract import extract_catalog
from tests.s3 import Wire, access_key, check_signatures, environment

pytestmark = pytest.mark.slow


def _bucket_dataset(wire: Wire, demo_dataset: Path, prefix: str) -> tuple[str, list[str]]:
    """The demo dataset under s3://bucket/prefix; its URL and its items."""
    url = wire.s3.upload(demo_dataset, wire.bucket, prefix)
    return url, sorted(p.stem for p in (demo_dataset / "videos").glob("*.mp4"))


def _committed(version: Path) -> dict[str, int]:
    """item -> the checksum of its committed row."""
    table = FeatureStore(version).index_table()
    return {r["item"]: r["checksum"] for r in table.to_pylist() if r["row"] is not None}


def _after_listing(monkeypatch: pytest.MonkeyPatch, then) -> None:
    """`then()` runs once extraction has listed the dataset, before any video is fetched."""
    listed = catalog_module.scan_videos

    def scan_then(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - scan_videos' own
        catalog = listed(*args, **kwargs)
        then()
        return catalog

    monkeypatch.setattr("pipelines.extraction.extract.scan_videos", scan_then)


def test_a_video_deleted_after_the_listing_is_its_failure_row_and_the_others_are_extracted(
    wire: Wire, demo_dataset: Path, extract_config, tmp_path: Path, monkeypatch, fault_report
) -> None:
    dataset, items = _bucket_dataset(wire, demo_dataset, "deleted")
    gone = items[2]
    _after_listing(
        monkeypatch,
        lambda: wire.s3.client().delete_object(
            Bucket=wire.bucket, Key=f"deleted/videos/{gone}.mp4"
        ),
    )

    summary = extract_catalog(dataset, tmp_path / "store", extract_config, progress=False)
    failures = {item: error for item, _, error in summary.failures}

    fault_report.record(
        "dataset video deleted from the bucket between listing and fetch",
        survived=summary.extracted == len(items) - 1 and list(failures) == [gone],
        message=f"failure row: {gone}: {failures.get(gone, '')}",
    )
    assert (summary.extracted, summary.failed) == (len(items) - 1, 1)
    assert failures[gone] == (
        f"{gone}.mp4: not found at {dataset}/videos/{gone}.mp4 (deleted since it was listed)"
    )


def test_the_dataset_server_going_away_mid_run_is_one_line_naming_the_items_left(
    wire: Wire, demo_dataset: Path, extract_config, tmp_path: Path, monkeypatch, fault_report
) -> None:
    dataset, items = _bucket_dataset(wire, demo_dataset, "gone")
    store = tmp_path / "store"
    _after_listing(monkeypatch, lambda: wire.proxy.go_after(f"/{wire.bucket}/gone/videos/", 5))
    try:
        with pytest.raises(PipelineError) as info:
            extract_catalog(dataset, store, extract_config, progress=False)
    finally:
        wire.proxy.start()
    error = str(info.value)
    version = store / extract_config.fingerprint()
    before = _committed(version)
    monkeypatch.undo()
    rerun = extract_catalog(dataset, store, extract_config, progress=False)
    after = _committed(version)
    lost = sorted(item for item, row in before.items() if after.get(item) != row)

    fault_report.record(
        "dataset's S3 server gone while the workers fetch videos, then back",
        survived=not lost and rerun.extracted == len(items) - len(before),
        lost=len(lost),
        message=error,
    )
    assert "\n" not in error
    assert re.match(rf"cannot fetch the video of item v\d{{4}}: dataset {dataset}/videos/", error)
    assert "cannot reach the object store at" in error
    named = re.search(r"(\d+) items? not committed: v\d{4}", error)
    assert named and int(named.group(1)) == len(items) - len(before)
    assert not lost and rerun.failed == 0 and sorted(after) == items


def test_slow_down_answers_from_the_dataset_bucket_are_retried(
    wire: Wire, demo_dataset: Path, extract_config, tmp_path: Path, fault_report
) -> None:
    dataset, items = _bucket_dataset(wire, demo_dataset, "slow")
    wire.proxy.mode, answered = "every:4", wire.proxy.answered_503
    try:
        summary = extract_catalog(dataset, tmp_path / "store", extract_config, progress=False)
    finally:
        wire.proxy.mode = "forward"

    fault_report.record(
        "dataset's S3 answers 503 SlowDown to every 4th request",
        survived=summary.extracted == len(items),
        message=f"{wire.proxy.answered_503 - answered} answers 503, retried; {summary.describe()}",
    )
    assert wire.proxy.answered_503 > answered
    assert (summary.extracted, summary.failed) == (len(items), 0)


def test_a_wrong_credential_for_the_dataset_is_one_line_without_the_credential(
    wire: Wire, demo_dataset: Path, extract_config, tmp_path: Path, fault_report
) -> None:
    dataset, _ = _bucket_dataset(wire, demo_dataset, "denied")
    key, wrong = access_key(wire.s3.endpoint)
    check_signatures(wire.s3.endpoint, after=b"0")
    try:
        with environment(wire.s3.env(AWS_ACCESS_KEY_ID=key[0], AWS_SECRET_ACCESS_KEY=wrong)):
            with pytest.raises(PipelineError) as info:
                extract_catalog(dataset, tmp_path / "store", extract_config, progress=False)
    finally:
        check_signatures(wire.s3.endpoint, after=b"inf")
    message = str(info.value)

    fault_report.record(
        "dataset's bucket with a wrong secret access key",
        survived="access denied" in message,
        message=message,
    )
    assert f"dataset {dataset}" in message and "access denied" in message
    assert "\n" not in message
    for secret in (*key, wrong):
        assert secret not in message
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


def test_a_dataset_in_a_missing_bucket_is_one_line(
    wire: Wire, extract_config, tmp_path: Path, fault_report
) -> None:
    with pytest.raises(PipelineError) as info:
        extract_catalog("s3://no-such-bucket/data", tmp_path / "store", extract_config)
    message = str(info.value)

    fault_report.record(
        "dataset in a bucket that does not exist",
        survived="does not exist" in message,
        message=message,
    )
    assert "dataset s3://no-such-bucket/data" in message
    assert "bucket 'no-such-bucket' does not exist" in message and "\n" not in message
