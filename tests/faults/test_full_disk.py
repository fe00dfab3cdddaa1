"""A store on a full disk: the test mounts a small tmpfs of its own (root, or CAP_SYS_ADMIN;
skipped with the reason otherwise), puts the store there and extracts the demo catalog. The
user gets one line naming the store, the item and the cause; the store verifies afterwards (the
index names only rows written before the disk filled); once there is room, a rerun completes
and keeps every row published before."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from featurizer.store import FeatureStore
from tests.faults.conftest import assert_one_line_error, run_cli

pytestmark = pytest.mark.slow

SIZE = "200k"  # the store's metadata and about three 48 KB rows of the tiny model


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a {SIZE} tmpfs (needs root or CAP_SYS_ADMIN): {done.stderr}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_full_disk_is_one_line_and_the_store_still_verifies(
    demo_dataset: Path,
    small_disk: Path,
    tmp_path: Path,
    ray_local: None,
    extract_config,
    one_prompt_preset: Path,
    fault_report,
) -> None:
    dataset, store = tmp_path / "dataset", small_disk / "store"
    shutil.copytree(demo_dataset, dataset)
    items = sorted(p.stem for p in (dataset / "videos").glob("*.mp4"))
    argv = ["extract", "--dataset", dataset, "--store", store, "--preset", one_prompt_preset]

    result = run_cli(argv)
    line = result.error_line
    version = FeatureStore.open(store, extract_config.fingerprint())
    report = version.verify()
    published = version.index()
    fault_report.record(
        f"full disk under the store ({SIZE} tmpfs)",
        survived=result.code == 1 and report.ok,
        message=line,
    )
    assert_one_line_error(result, str(store), "No space left on device", "cannot write the row")
    assert report.ok, report.describe()
    assert len(published) < len(items)
    kept = version.read(sorted(published)) if published else np.empty(0)

    # room again: the rerun extracts the rest and keeps what was published
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    rerun = run_cli(argv)
    version = FeatureStore.open(store, extract_config.fingerprint())
    after = version.verify()
    index = version.index()
    lost = [item for item in published if index.get(item) != published[item]]
    fault_report.record(
        "rerun once the disk has room",
        survived=rerun.code == 0 and after.ok and set(index) == set(items) and not lost,
        lost=len(lost) + len(set(items) - set(index)),
        message=rerun.stdout.strip().splitlines()[0] if rerun.stdout.strip() else rerun.stderr,
    )
    assert rerun.code == 0, rerun.stderr
    assert after.ok, after.describe()
    assert set(index) == set(items)
    assert lost == []
    if published:
        assert np.array_equal(version.read(sorted(published)), kept)
