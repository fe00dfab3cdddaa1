"""The README's commands with an s3:// store, as a user runs them: only the standard AWS variables
point them at the server (moto on loopback). `linkedout extract`, then `store verify`, then
`train`; a second extract extracts nothing. The tiny checkpoint has random weights: these tests
pin the mechanics, not feature quality."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@dataclass
class Step:
    code: int
    out: str
    err: str


@dataclass
class Session:
    dataset: Path
    store: str
    env: dict[str, str]
    steps: dict[str, Step]


def _linkedout(args: list[str], env: dict[str, str]) -> Step:
    cli = Path(sys.executable).with_name("linkedout")
    done = subprocess.run([str(cli), *args], env=env, capture_output=True, text=True, timeout=600)
    return Step(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def session(demo_dataset: Path, tiny_model: Path, s3, tmp_path_factory) -> Session:
    root = tmp_path_factory.mktemp("s3-cli")
    dataset = Path(shutil.copytree(demo_dataset, root / "dataset"))
    store = f"s3://{s3.bucket()}/linkedout/store"
    env = {**os.environ, **s3.env()}
    steps = {
        "extract": _linkedout(
            ["extract", "--dataset", str(dataset), "--store", store, "--model", str(tiny_model)],
            env,
        ),
        "verify": _linkedout(["store", "verify", store], env),
        "ingest": _linkedout(["ingest", str(dataset)], env),
        "train": _linkedout(
            ["train", "--dataset", str(dataset), "--store", store, "--out", str(root / "run")]
            + ["--variant", "full", "--epochs", "1"],
            env,
        ),
        "again": _linkedout(
            ["extract", "--dataset", str(dataset), "--store", store, "--model", str(tiny_model)],
            env,
        ),
    }
    return Session(dataset, store, env, steps)


def test_extract_into_an_s3_store_extracts_every_video(session: Session) -> None:
    step = session.steps["extract"]

    assert step.code == 0, step.err[-2000:]
    assert step.out.startswith("extracted 12, skipped 0 (already stored), failed 0;")
    assert f"store {session.store}/" in step.out


def test_store_verify_passes_on_the_s3_store(session: Session) -> None:
    step = session.steps["verify"]

    assert step.code == 0, step.err
    assert step.out.startswith(f"OK: prompt bank {session.store}/")
    assert step.out.count(": 12 committed rows, 0 failures") == 3


def test_train_reads_the_s3_store(session: Session) -> None:
    step = session.steps["train"]
    run = Path(session.steps["train"].out.split("trained full into ")[1].split(" ")[0])

    assert step.code == 0, step.err[-2000:]
    assert json.loads((run / "config.json").read_text())["store"]["path"] == session.store
    assert (run / "item_embeddings.npy").is_file()


def test_a_second_extract_extracts_nothing(session: Session) -> None:
    step = session.steps["again"]

    assert step.code == 0, step.err[-2000:]
    assert step.out.startswith("extracted 0, skipped 12 (already stored), failed 0;")


def test_no_credential_reaches_the_output(session: Session) -> None:
    secrets = (session.env["AWS_ACCESS_KEY_ID"], session.env["AWS_SECRET_ACCESS_KEY"])
    for name, step in session.steps.items():
        for secret in secrets:
            assert secret not in step.out and secret not in step.err, name
