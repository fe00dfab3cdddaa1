"""Bad store addresses and object-store settings, tried as a careless user would: each is one
line naming the input (never a Rust panic or a traceback, never a credential), nothing is
written anywhere, and a server that never answers is given up on in seconds, not minutes."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from featurizer.store import location
from tests.faults.conftest import REPO, assert_one_line_error, cli_env, run_cli

AWS = {
    "AWS_ACCESS_KEY_ID": "AKIDLINKEDOUTTEST001",
    "AWS_SECRET_ACCESS_KEY": "linkedout/test/secret",
    "AWS_REGION": "us-east-1",
    "AWS_ALLOW_HTTP": "true",
}


def _cli(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """`linkedout ARGV` as a process: a Rust panic prints to the process's stderr, which an
    in-process run would not capture."""
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *argv],
        cwd=cwd, env={**cli_env(**env), "PYTHONPATH": str(REPO)}, capture_output=True,
        text=True, timeout=180,
    )  # fmt: skip


def _one_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("linkedout "), result.stderr
    assert "panicked" not in result.stderr and "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("store", ["s3:/bucket/x", "S3:/bucket/x", "s3:bucket/x", "gs://bucket/x"])
def test_an_address_that_looks_like_a_url_is_refused_and_no_local_directory_appears(
    store: str, demo_dataset: Path, tmp_path: Path, monkeypatch, fault_report
) -> None:
    monkeypatch.chdir(tmp_path)

    result = run_cli(["extract", "--dataset", demo_dataset, "--store", store])

    line = assert_one_line_error(result, repr(store))
    left = sorted(p.name for p in tmp_path.iterdir())
    fault_report.record(f"--store {store}", survived=not left, message=line)
    assert left == []


def test_an_upper_case_scheme_is_the_s3_scheme() -> None:
    assert location("S3://bucket/store").url == "s3://bucket/store"


@pytest.mark.parametrize(
    ("store", "endpoint", "named"),
    [
        ("s3://bad bucket/x", "http://127.0.0.1:9", "'bad bucket' is not an S3 bucket name"),
        ("s3://ok-bucket/a\x01b", "http://127.0.0.1:9", "control characters"),
        ("s3://ok-bucket/x", "localhost:9000", "AWS_ENDPOINT_URL"),
        ("s3://ok-bucket/x", "http://[::1", "AWS_ENDPOINT_URL"),
        ("s3://ok-bucket/x", "http://127.0.0.1:99999", "AWS_ENDPOINT_URL"),
        ("s3://ok-bucket/x", "not a url", "AWS_ENDPOINT_URL"),
    ],
    ids=["bucket-with-space", "control-char", "no-scheme", "bad-ipv6", "bad-port", "words"],
)
def test_a_malformed_bucket_or_endpoint_is_one_line_not_a_panic(
    store: str, endpoint: str, named: str, tmp_path: Path, fault_report
) -> None:
    result = _cli(["store", "info", store], tmp_path, **AWS, AWS_ENDPOINT_URL=endpoint)

    line = _one_line(result)
    fault_report.record(
        f"store {store!r} with AWS_ENDPOINT_URL={endpoint!r}", survived=True, message=line
    )
    assert named in line


def test_credentials_in_the_endpoint_url_never_reach_an_error(tmp_path: Path, fault_report) -> None:
    endpoint = "http://storeuser:hunter2secret@127.0.0.1:9"

    result = _cli(["store", "info", "s3://ok-bucket/x"], tmp_path, **AWS, AWS_ENDPOINT_URL=endpoint)

    line = _one_line(result)
    leaked = [s for s in ("hunter2secret", "storeuser") if s in result.stderr + result.stdout]
    fault_report.record(
        "AWS_ENDPOINT_URL with a user name and password", survived=not leaked, message=line
    )
    assert not leaked and "user name or password" in line


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server that accepts every connection and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for connection in held:
        connection.close()


def test_an_endpoint_that_never_answers_is_one_line_within_seconds(
    silent_server: str, tmp_path: Path, fault_report
) -> None:
    started = time.monotonic()

    result = _cli(
        ["store", "info", "s3://ok-bucket/x"], tmp_path, **AWS, AWS_ENDPOINT_URL=silent_server
    )

    seconds = time.monotonic() - started
    line = _one_line(result)
    fault_report.record(
        f"an S3 endpoint that accepts connections and never answers ({seconds:.0f} s)",
        survived=seconds < 60,
        message=line,
    )
    assert "did not answer in time" in line and silent_server in line
    assert seconds < 60
