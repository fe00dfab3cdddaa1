"""Two `linkedout extract` runs on one store: the second stops at once, exit code 1, one line
naming the store version and its lock, while the first goes on; a reader does not block on the
writer's lock; afterwards the store verifies with every video of the first run."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from featurizer.config import load_preset
from featurizer.store import FeatureStore
from featurizer.store.layout import LOCK_FILE
from tests.faults.conftest import CliProcess, assert_one_line_error, wait_for

pytestmark = pytest.mark.slow


def _lock_held(lock: Path) -> bool:
    """Whether some process holds a flock on `lock` (per /proc/locks)."""
    try:
        inode = lock.stat().st_ino
        table = Path("/proc/locks").read_text()
    except OSError:
        return False
    for line in table.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
            return True
    return False


def test_second_extraction_on_a_busy_store_stops_at_once_with_one_line(
    demo_dataset: Path,
    tiny_model: Path,
    one_prompt_preset: Path,
    tmp_path: Path,
    cli_processes,
    fault_report,
) -> None:
    dataset, store = tmp_path / "dataset", tmp_path / "store"
    (dataset / "videos").mkdir(parents=True)
    items = sorted(p.stem for p in (demo_dataset / "videos").glob("*.mp4"))[:3]
    for item in items:
        shutil.copyfile(demo_dataset / "videos" / f"{item}.mp4", dataset / "videos" / f"{item}.mp4")
    fingerprint = load_preset("demo").replace(model=str(tiny_model), prompts=()).fingerprint()
    lock = store / fingerprint / LOCK_FILE
    argv = ["extract", "--dataset", dataset, "--store", store, "--preset", one_prompt_preset]

    first = CliProcess(argv, tmp_path / "logs", "first")
    cli_processes.append(first)
    wait_for(lambda: _lock_held(lock) or first.poll() is not None, 120, what="the first lock")
    assert first.poll() is None, first.stderr

    # a reader never takes the lock
    t0 = time.monotonic()
    report = FeatureStore.open(store, fingerprint).verify()
    read_seconds = time.monotonic() - t0

    second = CliProcess(argv, tmp_path / "logs", "second")
    cli_processes.append(second)
    result = second.wait(timeout=120)
    first_still_running = first.poll() is None

    line = result.error_line
    fault_report.record(
        "two extract runs on one store (the second)",
        survived=result.code == 1 and first_still_running,
        message=line,
    )
    assert_one_line_error(result, str(store / fingerprint), "busy", "another extraction")
    assert result.code == 1
    assert first_still_running  # it stopped at once; it did not wait for the first
    assert report.ok and read_seconds < 10

    done = first.wait(timeout=300)
    version = FeatureStore.open(store, fingerprint)
    after = version.verify()
    fault_report.record(
        "two extract runs on one store (the first, and the store after)",
        survived=done.code == 0 and after.ok and set(version.index()) == set(items),
        lost=len(set(items) - set(version.index())),
        message=f"{done.stdout.strip().splitlines()[0] if done.stdout.strip() else done.stderr[-200:]}"
        f"; {after.describe().splitlines()[0]}",
    )
    assert done.code == 0, done.stderr
    assert after.ok, after.describe()
    assert set(version.index()) == set(items)
