"""The Dagster UI as a user opens it: dagster-webserver on loopback, the asset graph in Chromium."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.orchestration import ASSETS

pytestmark = pytest.mark.slow

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def webserver(tmp_path: Path):
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    webserver = Path(sys.executable).with_name("dagster-webserver")
    process = subprocess.Popen(
        [str(webserver), "-m", "dagster_project", "-h", "127.0.0.1", "-p", str(port)],
        env=env,
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
                assert process.poll() is None, "dagster-webserver exited during start-up"
                time.sleep(0.5)
        else:
            pytest.fail("dagster-webserver did not answer within 90 s")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium: `make test` installs Debian's chromium where apt is available",
)
def test_asset_graph_shows_all_six_assets(webserver: str) -> None:
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
        page.goto(f"{webserver}/asset-groups")
        # the code location loads after the page: wait for the graph's first node
        page.get_by_text("video_catalog", exact=True).first.wait_for(timeout=90_000)
        page.wait_for_load_state("networkidle")
        skip = page.get_by_role("button", name="Skip")  # Dagster's first-visit community dialog
        if skip.count():
            skip.click()
        for asset in ASSETS:
            # the sidebar lists it first; the graph's node is the last match
            page.get_by_text(asset, exact=True).last.wait_for(timeout=30_000)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "dagster-asset-graph.png"))
        browser.close()

    assert (SCREENSHOTS / "dagster-asset-graph.png").stat().st_size > 10_000
