"""Node faults on a real multi-node Ray cluster (two nodes on this machine, every socket on
loopback; tests/faults/nodes_scenario.py runs it in a process of its own): the model actors run
on the worker node and write into the object store (an S3 server on loopback) while the driver
only commits; the worker node killed mid-run loses nothing published and a rerun on a new node
completes; Ray Train with one worker on each node reads the same store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster_run(demo_dataset: Path, tiny_model: Path, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("nodes")
    done = subprocess.run(
        [sys.executable, "-m", "tests.faults.nodes_scenario", str(demo_dataset), str(tiny_model)]
        + [str(work)],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT=")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT=") :])


def test_every_socket_of_the_cluster_is_on_loopback(cluster_run: dict) -> None:
    assert cluster_run["listeners"] == [] and cluster_run["listeners_end"] == []


def test_model_actors_run_on_the_worker_node_and_the_driver_only_commits(
    cluster_run: dict, fault_report
) -> None:
    extract_nodes = cluster_run["extract_nodes"]

    assert cluster_run["first"] == {"extracted": 6, "failed": 0}
    assert cluster_run["worker_node"] in extract_nodes
    assert cluster_run["driver_node"] not in extract_nodes  # no model ran beside the driver


def test_killing_the_worker_node_loses_nothing_published(cluster_run: dict, fault_report) -> None:
    kill = cluster_run["kill"]
    fault_report.record(
        "Ray worker node killed mid-extraction (SIGKILL of its raylet), store on S3",
        survived=not kill["finished"] and not kill["lost"],
        lost=len(kill["lost"]),
        message=kill["error"],
    )
    assert not kill["finished"]  # the run stops instead of waiting for a node forever
    assert "the extraction's actor pool made no progress for 12 s" in kill["error"]
    assert "\n" not in kill["error"]
    assert "the rows published before stay valid" in kill["error"]
    assert kill["lost"] == []


def test_a_rerun_on_a_new_node_completes_and_a_third_extracts_nothing(
    cluster_run: dict, fault_report
) -> None:
    rerun = cluster_run["rerun"]
    fault_report.record(
        "rerun after the worker node was lost (a new node)",
        survived=rerun["items"] == 12 and rerun["verify_ok"] and rerun["again"] == 0,
        lost=len(rerun["lost"]),
        message=f"extracted {rerun['extracted']}, then {rerun['again']}; verify ok",
    )
    assert rerun["items"] == 12 and rerun["lost"] == [] and rerun["verify_ok"]
    # what the killed run committed, whenever the kill landed relative to its commits
    assert rerun["extracted"] == 12 - cluster_run["kill"]["published_after"]
    assert rerun["again"] == 0


def test_ray_train_runs_one_worker_on_each_node_over_the_same_store(cluster_run: dict) -> None:
    assert len(cluster_run["train_nodes"]) == 2
    assert 0.0 <= cluster_run["train"]["hr@10"] <= 1.0
