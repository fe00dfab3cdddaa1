"""new_videos_sensor under the real `dagster-daemon`: the daemon ticks the sensor, queues its
runs in the instance's run queue (the dagster.yaml the project writes: one run at a time in the
feature store's pool) and launches them with the default run launcher, each in its own process
with its own local Ray, the tiny checkpoint and one prompt.

The tests share one daemon, one dataset and one store, in order: the second adds videos to what
the first left extracted; the third submits two runs of the whole catalog at once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.instance import INSTANCE_SETTINGS
from pipelines.extraction.preset import resolve_extractor
from pipelines.store.status import store_verification, unextracted_videos

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 600  # for a slow 2-core machine; a passing run takes a fraction of it
# the queue is checked every second instead of every 5 s: each run here waits in the queue
TEST_INSTANCE_SETTINGS = "telemetry:\n  enabled: false\nrun_queue:\n  dequeue_interval_seconds: 1\n"
IN_FLIGHT = {
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
}


@dataclass
class Daemon:
    root: Path
    dataset: Path
    store: Path
    preset: Path
    instance: dg.DagsterInstance
    log: Path
    env: dict[str, str]

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_for(self, what: str, condition: Callable[[], object]) -> object:
        """`condition()`'s first truthy value, polled; a failure shows the daemon's log tail."""
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(1.0)
        pytest.fail(f"timed out waiting for {what}; the daemon's log ends:\n{self.tail()}")

    def pending(self) -> list[tuple[str, int]]:
        return unextracted_videos(self.dataset, self.store, resolve_extractor(str(self.preset)))

    def runs(self) -> list[dg.DagsterRun]:
        return list(self.instance.get_runs(dg.RunsFilter(job_name="extract_new_videos")))

    def settled(self) -> bool:
        """No video pending and no run queued or running."""
        return not self.pending() and not any(r.status in IN_FLIGHT for r in self.runs())


def _add_videos(dataset: Path, prefix: str, n: int) -> list[str]:
    """`n` new items whose videos are copies of the demo's (new names, repeated content)."""
    sources = sorted((dataset / "videos").glob("v*.mp4"))
    names = [f"{prefix}{i:03d}" for i in range(n)]
    staging = dataset / "staging"  # then renamed into videos/: they land at once
    staging.mkdir()
    for i, name in enumerate(names):
        shutil.copyfile(sources[i % len(sources)], staging / f"{name}.mp4")
    for path in staging.iterdir():
        path.rename(dataset / "videos" / path.name)
    staging.rmdir()
    return names


def _requested(run: dg.DagsterRun) -> list[str]:
    return run.run_config["ops"]["video_features"]["config"]["items"]


def _check_evaluations(instance: dg.DagsterInstance, run_id: str) -> list[bool]:
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return [r.dagster_event.event_specific_data.passed for r in records]


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, demo_dataset: Path, one_prompt_preset: Path
) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("daemon")
    shutil.copytree(demo_dataset, root / "dataset")
    home = root / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_SETTINGS + TEST_INSTANCE_SETTINGS)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LINKEDOUT_DATASET": str(root / "dataset"),
        "LINKEDOUT_STORE": str(root / "store"),
        "LINKEDOUT_RUNS": str(root / "runs"),
        "LINKEDOUT_REPORT": str(root / "report"),
        "LINKEDOUT_PRESET": str(one_prompt_preset),
        "LINKEDOUT_SENSOR_INTERVAL": "2",
    }
    log = root / "daemon.log"
    bin_dir = Path(sys.executable).parent
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(bin_dir / "dagster-daemon"), "run", "-m", "dagster_project"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its code server and run workers stop with it
        )
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        started = subprocess.run(
            [str(bin_dir / "dagster"), "sensor", "start", "new_videos_sensor"]
            + ["-m", "dagster_project"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        yield Daemon(root, root / "dataset", root / "store", one_prompt_preset, instance, log, env)
    finally:
        instance.dispose()
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def after_150_new_videos(daemon: Daemon) -> list[dg.DagsterRun]:
    """150 new videos in the 12-video dataset, with nothing extracted yet; the runs it took."""
    _add_videos(daemon.dataset, "new", 150)
    daemon.wait_for("all 162 videos extracted and no run left", daemon.settled)
    return daemon.runs()


def test_150_new_videos_are_all_extracted_and_no_run_or_check_fails(
    daemon: Daemon, after_150_new_videos: list[dg.DagsterRun]
) -> None:
    runs = after_150_new_videos
    requested = [item for r in runs for item in _requested(r)]
    assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * len(runs)
    assert len(requested) == len(set(requested)) == 162  # none lost, none requested twice
    assert all(_check_evaluations(daemon.instance, r.run_id) == [True] for r in runs)
    assert store_verification(daemon.store, resolve_extractor(str(daemon.preset))) == []


def test_an_extraction_run_reports_its_progress_as_observations(
    daemon: Daemon, after_150_new_videos: list[dg.DagsterRun]
) -> None:
    for run in after_150_new_videos:
        records = daemon.instance.all_logs(
            run.run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION
        )
        progress = [
            {k: v.value for k, v in r.asset_observation.metadata.items()}
            for r in records
            if r.asset_observation.asset_key == dg.AssetKey("video_features")
        ]
        total = len(_requested(run))
        assert progress and progress[-1]["videos done"] == progress[-1]["videos to do"] == total


def _step_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The process of the run's video_features step, once the step has started."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START):
        if record.step_key == "video_features":
            return record.dagster_event.pid
    return None


def test_a_killed_run_has_its_videos_requested_again_and_extracted(
    daemon: Daemon, after_150_new_videos: list[dg.DagsterRun]
) -> None:
    before = {r.run_id for r in daemon.runs()}
    late = _add_videos(daemon.dataset, "late", 20)
    [killed] = daemon.wait_for(
        "a run for the new videos",
        lambda: [r for r in daemon.runs() if r.run_id not in before],
    )
    pid = daemon.wait_for("its extraction step", lambda: _step_pid(daemon.instance, killed.run_id))
    os.kill(pid, signal.SIGKILL)  # the step's process, with the Ray driver and the store writer

    daemon.wait_for("every video extracted and no run left", daemon.settled)

    runs = {r.run_id: r for r in daemon.runs()}
    assert runs[killed.run_id].status == dg.DagsterRunStatus.FAILURE
    retried = [r for r in runs.values() if r.run_id not in before | {killed.run_id}]
    assert [r.status for r in retried] == [dg.DagsterRunStatus.SUCCESS] * len(retried)
    assert set(late) <= {item for r in retried for item in _requested(r)}


def test_a_second_extraction_run_waits_in_the_queue_until_the_first_ends(
    daemon: Daemon, after_150_new_videos: list[dg.DagsterRun]
) -> None:
    before = {r.run_id for r in daemon.runs()}
    dagster = Path(sys.executable).with_name("dagster")
    launches = [  # two runs of the whole catalog, submitted together
        subprocess.Popen(
            [str(dagster), "job", "launch", "-m", "dagster_project", "-j", "extract_new_videos"],
            cwd=ROOT,
            env=daemon.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    for launch in launches:
        output, _ = launch.communicate(timeout=300)
        assert launch.returncode == 0, output

    daemon.wait_for("both runs to end", daemon.settled)

    records = [
        r
        for r in daemon.instance.get_run_records(dg.RunsFilter(job_name="extract_new_videos"))
        if r.dagster_run.run_id not in before
    ]
    assert [r.dagster_run.status for r in records] == [dg.DagsterRunStatus.SUCCESS] * 2
    first, second = sorted(records, key=lambda r: r.start_time)
    assert second.start_time >= first.end_time  # queued, not started beside it
