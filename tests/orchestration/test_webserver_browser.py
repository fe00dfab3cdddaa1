"""The Dagster UI as a user opens it: `dagster dev` on loopback, the asset graph in Chromium,
"Materialize all" clicked and the run followed to success. The screenshots land in
build/screenshots/ (docs/ holds committed copies)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from featurizer.config import PRESET_DIR
from tests.orchestration import ASSETS

pytestmark = pytest.mark.slow

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def workspace(tmp_path: Path, demo_dataset: Path, tiny_model: Path) -> Path:
    """A small dataset, the tiny checkpoint and one epoch per variant: what the UI's run trains."""
    shutil.copytree(demo_dataset, tmp_path / "dataset")
    preset = json.loads((PRESET_DIR / "demo.json").read_text())
    preset["model"] = str(tiny_model)
    (tmp_path / "preset.json").write_text(json.dumps(preset))
    (tmp_path / "train.yaml").write_text("epochs: 1\n")
    (tmp_path / "home").mkdir()
    # the run queue checked every second instead of every 5 s: the clicked run starts sooner
    (tmp_path / "home" / "dagster.yaml").write_text("run_queue:\n  dequeue_interval_seconds: 1\n")
    return tmp_path


# `dagster dev` stops on SIGTERM by giving it SIGINT's handler. Started from a background job
# (nohup, a CI runner's `&`) it inherits SIGINT ignored, so it ignored SIGTERM too and the
# teardown waited out 60 s. It is started as a terminal starts it: SIGINT at its default.
SIGINT_AT_DEFAULT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


@pytest.fixture
def webserver(workspace: Path):
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(workspace / "home"),
        "LINKEDOUT_DATASET": str(workspace / "dataset"),
        "LINKEDOUT_STORE": str(workspace / "store"),
        "LINKEDOUT_RUNS": str(workspace / "runs"),
        "LINKEDOUT_REPORT": str(workspace / "report"),
        "LINKEDOUT_PRESET": str(workspace / "preset.json"),
        "LINKEDOUT_TRAIN_CONFIG": str(workspace / "train.yaml"),
    }
    # `dagster dev`, as users start it: the webserver and the daemon that launches queued runs
    dagster = Path(sys.executable).with_name("dagster")
    process = subprocess.Popen(
        [sys.executable, "-c", SIGINT_AT_DEFAULT, str(dagster)]
        + ["dev", "-m", "dagster_project", "-h", "127.0.0.1", "-p", str(port)],
        env=env,
        start_new_session=True,  # its webserver, daemon and code server stop together
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=2)
                break
            except OSError:
                assert process.poll() is None, "dagster dev exited during start-up"
                time.sleep(0.5)
        else:
            pytest.fail("dagster dev did not answer within 90 s")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium: `make test` installs Debian's chromium where apt is available",
)
def test_materialize_all_from_the_asset_graph_runs_to_success(
    webserver: str, workspace: Path
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            # no sandbox as root in CI; no background traffic on a machine without a network
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        # Dagster's first-visit community dialog opens a second after the page, over whatever is
        # being clicked: mark it dismissed, as the UI does once a user has skipped it
        page.add_init_script("window.localStorage.setItem('communityNux', '\"1\"')")
        page.goto(f"{webserver}/asset-groups")
        # the code location loads after the page: wait for the graph's first node
        page.get_by_text("video_catalog", exact=True).first.wait_for(timeout=90_000)
        page.wait_for_load_state("networkidle")
        for asset in ASSETS:
            # the sidebar lists every asset (the graph's labels of long names are shortened)
            page.get_by_text(asset, exact=True).first.wait_for(state="attached", timeout=30_000)
        _close_dialogs(page)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "dagster-asset-graph.png"))

        page.wait_for_load_state("networkidle")  # the launch needs the assets' loaded status
        _close_dialogs(page)
        page.get_by_role("button", name="Materialize all").first.click()
        run = _wait_for_run(workspace / "home", timeout_s=600)
        assert run.status == dg.DagsterRunStatus.SUCCESS, run.status

        page.goto(f"{webserver}/runs/{run.run_id}")
        page.get_by_text("Success").first.wait_for(timeout=60_000)
        page.screenshot(path=str(SCREENSHOTS / "dagster-run.png"))
        page.goto(f"{webserver}/assets/ranker_full")
        page.get_by_text("NDCG@10").first.wait_for(timeout=60_000)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(SCREENSHOTS / "dagster-variant-full.png"), full_page=True)
        browser.close()

    assert (SCREENSHOTS / "dagster-asset-graph.png").stat().st_size > 10_000
    assert (workspace / "report" / "report.html").is_file()


def _close_dialogs(page) -> None:
    """Close any dialog the UI opened on its own (a notice, a what's-new) before clicking under it."""
    backdrop = page.locator(".bp5-overlay-backdrop")
    for _ in range(10):
        if not backdrop.count():
            return
        page.keyboard.press("Escape")
        page.wait_for_timeout(500)
    assert not backdrop.count(), "a dialog the test cannot close covers the asset graph"


def _wait_for_run(home: Path, timeout_s: float) -> dg.DagsterRun:
    """The run "Materialize all" launched, once it has finished."""
    deadline = time.monotonic() + timeout_s
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            runs = instance.get_runs()
            if runs and runs[0].is_finished:
                return runs[0]
            time.sleep(2)
    pytest.fail(f"the run launched by Materialize all did not finish within {timeout_s:.0f} s")
