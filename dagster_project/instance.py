"""The Dagster instance settings LinkedOut needs (a DAGSTER_HOME's dagster.yaml): one run at a
time writes the feature store. `video_features` is in the `linkedout_feature_store` pool; with
run granularity and a limit of 1 the run queue keeps a second such run QUEUED until the first
ends, instead of starting both and failing one on the store's lock. A deployment puts these
lines in its own dagster.yaml (or sets `granularity: run` there and this pool's limit alone:
`dagster instance concurrency set linkedout_feature_store 1`)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

INSTANCE_SETTINGS = """\
# LinkedOut: one run at a time writes the feature store (the linkedout_feature_store pool of
# video_features); a second one waits in the run queue. No other asset is in a pool.
concurrency:
  pools:
    granularity: run
    default_limit: 1
"""


def write_instance_settings(home: Path) -> Path:
    """`home`/dagster.yaml with INSTANCE_SETTINGS when it has none; an existing file is the
    user's and is left as it is (a warning names what it lacks)."""
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():
        settings.write_text(INSTANCE_SETTINGS)
    elif "concurrency:" not in settings.read_text():
        log.warning(
            "%s sets no concurrency pools: two extraction runs may start together and the "
            "second wait for the store's lock; see dagster_project/instance.py",
            settings,
        )
    return settings
