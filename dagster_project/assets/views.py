"""Compact store views trained beside the full store: for each view the `views` resource
names, derive it from the CURRENT version (only what it lacks) and train `full` on it into
runs/views/<view>/, for the report's efficiency section."""

import dagster as dg

from dagster_project.assets.dataset import interactions
from dagster_project.assets.features import video_features
from dagster_project.automation import RETRAIN_ON_NEW_DATA
from dagster_project.errors import one_line_failures
from dagster_project.resources import LinkedOutPaths, StoreViews, TrainingSettings
from dagster_project.versions import code_version


@dg.asset(
    deps=[interactions, video_features],
    group_name="linkedout",
    code_version=code_version("pipelines.training.views"),
    kinds={"zarr", "pytorch"},
    automation_condition=RETRAIN_ON_NEW_DATA,
)
def store_views(
    context: dg.AssetExecutionContext,
    paths: LinkedOutPaths,
    views: StoreViews,
    training: TrainingSettings,
) -> dg.MaterializeResult:
    """Int8, fewer-token and fewer-layer views of the store (supplementary §9.1), each with the
    full ranker trained on it: what storage each saves and what it costs in HR@10 and NDCG@10."""
    from pipelines.training.views import train_views

    specs = views.specs()
    if not specs:
        context.log.info("no store views configured (the views resource, $LINKEDOUT_STORE_VIEWS)")
        return dg.MaterializeResult(metadata={"views": "none configured"})
    with one_line_failures():
        runs = train_views(
            paths.dataset,
            paths.store,
            paths.runs,
            specs,
            config=training.settings_file,
            say=context.log.info,
        )
    rows = ["| view | version | bytes per video | HR@10 | NDCG@10 | cold-start HR@10 |"]
    rows.append("|---|---|---:|---:|---:|---:|")
    for run in runs:
        rows.append(
            f"| {run.spec.name} | {run.view.name} | {run.bytes_per_item:,} | "
            f"{run.metric('overall', 'hr@10')} | {run.metric('overall', 'ndcg@10')} | "
            f"{run.metric('cold_start', 'hr@10')} |"
        )
    return dg.MaterializeResult(
        metadata={
            "views": dg.MetadataValue.md("\n".join(rows)),
            **{f"bytes per video: {r.spec.name}": r.bytes_per_item for r in runs},
        }
    )
