"""The Dagster assets on a dataset in a bucket, as CI calls them: `dagster asset materialize` with
`LINKEDOUT_DATASET=s3://bucket/prefix`, the store in the same bucket, and only the standard AWS
variables pointing at the S3 server (moto on loopback)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from tests.s3 import KEY_ID, SECRET

pytestmark = pytest.mark.slow


@dataclass
class Materialized:
    returncode: int
    output: str
    instance: dg.DagsterInstance
    run_id: str

    def metadata(self, asset: str) -> dict:
        records = self.instance.get_records_for_run(
            self.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        [event] = [
            r.event_log_entry.dagster_event
            for r in records
            if r.event_log_entry.dagster_event.asset_key.to_user_string() == asset
        ]
        return {
            key: value.value
            for key, value in event.event_specific_data.materialization.metadata.items()
        }

    def checks(self) -> dict[str, bool]:
        records = self.instance.get_records_for_run(
            self.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        return {
            r.event_log_entry.dagster_event.event_specific_data.check_name: (
                r.event_log_entry.dagster_event.event_specific_data.passed
            )
            for r in records
        }


@pytest.fixture(scope="module")
def materialized(demo_dataset: Path, one_prompt_preset: Path, s3, tmp_path_factory):
    root = tmp_path_factory.mktemp("bucket-dagster")
    bucket = s3.bucket()
    home = root / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        **s3.env(),
        "DAGSTER_HOME": str(home),
        "LINKEDOUT_DATASET": s3.upload(demo_dataset, bucket, "data"),
        "LINKEDOUT_STORE": f"s3://{bucket}/store",
        "LINKEDOUT_RUNS": str(root / "runs"),
        "LINKEDOUT_PRESET": str(one_prompt_preset),
    }
    dagster = Path(sys.executable).with_name("dagster")
    process = subprocess.run(
        [str(dagster), "asset", "materialize", "-m", "dagster_project"]
        + ["--select", "interactions,video_catalog,video_features"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    instance = dg.DagsterInstance.from_config(str(home))
    [run] = instance.get_runs()
    yield Materialized(process.returncode, process.stdout + process.stderr, instance, run.run_id)
    instance.dispose()


def test_the_assets_materialize_from_a_bucket_dataset(materialized: Materialized) -> None:
    run = materialized.instance.get_run_by_id(materialized.run_id)

    assert materialized.returncode == 0, materialized.output[-3000:]
    assert run.status == dg.DagsterRunStatus.SUCCESS


def test_the_catalog_lists_the_bucket_and_the_features_hold_every_video(
    materialized: Materialized,
) -> None:
    assert materialized.metadata("video_catalog")["videos"] == 12
    assert materialized.metadata("video_features")["extracted"] == 12
    assert materialized.metadata("interactions")["users"] == 40


def test_every_check_passes_on_a_bucket_dataset(materialized: Materialized) -> None:
    checks = materialized.checks()

    assert checks and all(checks.values()), checks


def test_no_credential_reaches_the_run_output_or_its_events(materialized: Materialized) -> None:
    logs = materialized.instance.all_logs(materialized.run_id)
    text = materialized.output + "\n".join(str(entry) for entry in logs)

    assert KEY_ID not in text and SECRET not in text
