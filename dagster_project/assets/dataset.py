"""Dataset assets: the validated interactions with their split, and the catalog of video files."""

import dagster as dg

from dagster_project.errors import one_line_failures
from dagster_project.resources import LinkedOutPaths
from dagster_project.versions import code_version
from pipelines.dataset.catalog import scan_videos
from pipelines.dataset.ingest import INTERACTIONS, ingest, read_interactions, stale_sources
from pipelines.dataset.location import dataset_location

GROUP = "linkedout"


@dg.asset(
    group_name=GROUP, code_version=code_version("pipelines.dataset.ingest"), kinds={"parquet"}
)
def interactions(context: dg.AssetExecutionContext, paths: LinkedOutPaths) -> dg.MaterializeResult:
    """`pairs.csv` and `titles.csv` validated into `interactions.parquet` with the leave-one-out
    split (last interaction test, second-to-last validation, by timestamp). Materializing it
    ingests again; training stops while pairs.csv or titles.csv differ from what it was
    ingested from (the `interactions_current` check)."""
    first = not (dataset_location(paths.dataset) / INTERACTIONS).exists()
    changed = [] if first else stale_sources(paths.dataset)
    for change in changed:
        context.log.info(f"ingesting again: {change} since the last ingest")
    with one_line_failures():
        result = ingest(paths.dataset)
    for rejection in result.rejected[:50]:
        context.log.warning(f"rejected {rejection}")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(result.path)),
            "inputs since the last ingest": (
                "first ingest" if first else "; ".join(changed) or "unchanged"
            ),
            "users": result.n_users,
            "items": result.n_items,
            "interactions": result.n_interactions,
            "train / valid / test": f"{result.n_train} / {result.n_valid} / {result.n_test}",
            "rejected rows": len(result.rejected),
        }
    )


@dg.asset_check(
    asset=interactions,
    description="Columns, types and one valid+test row per user.",
    blocking=True,  # no split to train or evaluate on
)
def interactions_schema(paths: LinkedOutPaths) -> dg.AssetCheckResult:
    table = read_interactions(paths.dataset)
    expected = {"user": "string", "item": "string", "timestamp": "int64", "split": "string"}
    actual = {name: str(table.schema.field(name).type) for name in table.column_names}
    problems = [
        f"{c}: expected {t}, found {actual.get(c)}"
        for c, t in expected.items()
        if actual.get(c) != t
    ]
    splits = table.group_by(["user", "split"]).aggregate([("item", "count")]).to_pylist()
    bad_users = sorted(
        {r["user"] for r in splits if r["split"] != "train" and r["item_count"] != 1}
    )
    if bad_users:
        problems.append(f"{len(bad_users)} users without exactly one valid and one test row")
    return dg.AssetCheckResult(
        passed=not problems, metadata={"problems": "; ".join(problems) or "none"}
    )


@dg.asset_check(
    asset=interactions,
    description="pairs.csv and titles.csv are the files interactions.parquet was ingested from.",
    blocking=True,  # training refuses stale interactions: the variants would only fail
)
def interactions_current(paths: LinkedOutPaths) -> dg.AssetCheckResult:
    changed = stale_sources(paths.dataset)
    return dg.AssetCheckResult(
        passed=not changed,
        metadata={"changed since ingest": "; ".join(changed) or "none"},
    )


@dg.asset(
    group_name=GROUP, code_version=code_version("pipelines.dataset.catalog"), kinds={"parquet"}
)
def video_catalog(context: dg.AssetExecutionContext, paths: LinkedOutPaths) -> dg.MaterializeResult:
    """Every video of the dataset (files, or objects of a bucket listed a page at a time): item,
    path, size, identity and when it was first seen. Locally only files whose size or mtime
    changed are hashed again; in a bucket no video is read (its ETag is its identity)."""
    with one_line_failures():
        catalog = scan_videos(paths.dataset)
    for item, why in catalog.unreadable.items():
        context.log.warning(f"unreadable video {item}: {why}")
    return dg.MaterializeResult(
        metadata={
            "videos": len(catalog),
            "new since last scan": len(catalog.new_items),
            "unreadable": len(catalog.unreadable),
            "bytes": catalog.bytes,
        }
    )
