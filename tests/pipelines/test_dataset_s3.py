"""A dataset in a bucket, as a user runs the README's commands on it: `pairs.csv`, `titles.csv`
and `videos/<item>.mp4` under s3://bucket/data, the standard AWS variables pointing at the S3
server (moto on loopback, behind a proxy that records every request). `ingest`, `extract`,
`store verify`, `train`; a second extract reads no video; an overwritten video is fetched and
extracted again, alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.s3 import KEY_ID, SECRET, FaultyProxy

pytestmark = pytest.mark.slow


@dataclass
class Step:
    code: int
    out: str
    err: str
    video_gets: list[str]  # the videos/ objects this step fetched, by key


@dataclass
class Session:
    dataset: str
    store: str
    videos: list[str]  # the keys of the videos uploaded
    steps: dict[str, Step]


@pytest.fixture(scope="module")
def session(demo_dataset: Path, one_prompt_preset: Path, s3, tmp_path_factory) -> Session:
    root = tmp_path_factory.mktemp("s3-dataset")
    bucket = s3.bucket()
    dataset, store = s3.upload(demo_dataset, bucket, "data"), f"s3://{bucket}/store"
    proxy = FaultyProxy(s3.endpoint)
    env = {**os.environ, **s3.env(AWS_ENDPOINT_URL=proxy.url)}
    cli = Path(sys.executable).with_name("linkedout")
    extract = ["extract", "--dataset", dataset, "--store", store]
    extract += ["--preset", str(one_prompt_preset)]

    def run(args: list[str]) -> Step:
        proxy.requests_seen.clear()
        done = subprocess.run(
            [str(cli), *args], env=env, capture_output=True, text=True, timeout=600
        )
        gets = [
            path.split("?")[0].removeprefix(f"/{bucket}/")
            for method, path in proxy.requests_seen
            if method == "GET" and path.split("?")[0].startswith(f"/{bucket}/data/videos/")
        ]
        return Step(done.returncode, done.stdout, done.stderr, gets)

    steps = {"ingest": run(["ingest", dataset]), "extract": run(extract)}
    steps["verify"] = run(["store", "verify", store])
    steps["train"] = run(
        ["train", "--dataset", dataset, "--store", store, "--out", str(root / "run")]
        + ["--variant", "full", "--epochs", "1"]
    )
    steps["again"] = run(extract)
    client = s3.client()
    other = client.get_object(Bucket=bucket, Key="data/videos/v0004.mp4")["Body"].read()
    client.put_object(Bucket=bucket, Key="data/videos/v0003.mp4", Body=other)
    steps["changed"] = run(extract)
    proxy.stop()
    videos = sorted(f"data/videos/{p.name}" for p in (demo_dataset / "videos").glob("*.mp4"))
    return Session(dataset, store, videos, steps)


def test_ingest_reads_pairs_csv_from_the_bucket(session: Session) -> None:
    step = session.steps["ingest"]

    assert step.code == 0, step.err[-2000:]
    assert f"{session.dataset}/interactions.parquet" in step.out


def test_extract_fetches_each_video_once_and_extracts_every_one(session: Session) -> None:
    step = session.steps["extract"]

    assert step.code == 0, step.err[-2000:]
    assert step.out.startswith("extracted 12, skipped 0 (already stored), failed 0;")
    assert sorted(set(step.video_gets)) == session.videos


def test_store_verify_passes_after_a_bucket_extract(session: Session) -> None:
    step = session.steps["verify"]

    assert step.code == 0, step.err
    assert step.out.startswith("OK:") and "12 committed rows, 0 failures" in step.out


def test_train_reads_the_interactions_from_the_bucket(session: Session) -> None:
    step = session.steps["train"]
    run = Path(step.out.split("trained full into ")[1].split(" ")[0])

    assert step.code == 0, step.err[-2000:]
    assert json.loads((run / "config.json").read_text())["dataset"] == session.dataset
    assert (run / "item_embeddings.npy").is_file()


def test_a_second_extract_reads_no_video_bytes(session: Session) -> None:
    step = session.steps["again"]

    assert step.code == 0, step.err[-2000:]
    assert step.out.startswith("extracted 0, skipped 12 (already stored), failed 0;")
    assert step.video_gets == []


def test_an_overwritten_video_is_fetched_and_extracted_again_alone(session: Session) -> None:
    step = session.steps["changed"]

    assert step.code == 0, step.err[-2000:]
    assert step.out.startswith("extracted 1, skipped 11 (already stored), failed 0;")
    assert sorted(set(step.video_gets)) == ["data/videos/v0003.mp4"]


def test_no_credential_reaches_the_output(session: Session) -> None:
    for name, step in session.steps.items():
        for secret in (KEY_ID, SECRET):
            assert secret not in step.out and secret not in step.err, name
