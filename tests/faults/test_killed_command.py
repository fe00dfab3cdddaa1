"""`linkedout extract` killed with SIGKILL (the command alone, as `kill -9 PID` does): the local
Ray it started (GCS, raylet, workers, and the raylet's agents, which otherwise wait a minute to
report the raylet's death to the GCS that died with it) is gone within seconds."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.faults.conftest import CliProcess, session_processes, wait_for
from tests.worker_hooks import DELAY_ENV, INVOCATION_LOG_ENV

pytestmark = pytest.mark.slow


def test_the_ray_of_a_killed_extract_is_gone_within_a_minute(
    demo_dataset: Path, tmp_path: Path, one_prompt_preset: Path, cli_processes, fault_report
) -> None:
    dataset = shutil.copytree(demo_dataset, tmp_path / "dataset")
    calls = tmp_path / "calls.log"
    process = CliProcess(
        ["extract", "--dataset", dataset, "--store", tmp_path / "store"]
        + ["--preset", one_prompt_preset],
        tmp_path / "logs",
        "extract",
        **{INVOCATION_LOG_ENV: str(calls), DELAY_ENV: "1"},
    )
    cli_processes.append(process)
    wait_for(calls.exists, timeout=240, what="the first model call")
    ray_processes = len(session_processes(process.sid)) - 1

    os.kill(process.process.pid, signal.SIGKILL)
    process.process.wait(timeout=30)
    killed = time.monotonic()
    survivors = process.survivors(grace=30)  # well within the minute; before, ~65 s
    seconds = time.monotonic() - killed

    fault_report.record(
        f"linkedout extract killed alone (kill -9): {ray_processes} Ray processes",
        survived=not survivors,
        message=f"all gone {seconds:.0f} s after the kill" if not survivors else str(survivors),
    )
    assert ray_processes > 0 and not survivors
