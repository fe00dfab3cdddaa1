"""The trained ranker (the `full` cross-layer MoE variant) and its serving vectors."""

import dagster as dg

from dagster_project.assets.dataset import interactions
from dagster_project.assets.features import video_features
from dagster_project.resources import LinkedOutPaths
from pipelines.report import metrics_markdown, read_metrics
from pipelines.serve import serving_summary
from pipelines.train import train_run

GROUP = "linkedout"
MAIN_VARIANT = "full"


@dg.asset(
    deps=[interactions, video_features], group_name=GROUP, code_version="1", kinds={"pytorch"}
)
def ranker(context: dg.AssetExecutionContext, paths: LinkedOutPaths) -> dg.MaterializeResult:
    """The cross-layer knowledge-fusion MoE item encoder with a SASRec ranker, trained from
    scratch on the CURRENT feature store version and evaluated by full ranking on the test split
    (leave-one-out by time)."""
    result = train_run(
        paths.dataset,
        paths.store,
        paths.runs / MAIN_VARIANT,
        variant=MAIN_VARIANT,
        fresh=True,
        progress=False,
    )
    context.log.info(result.describe().splitlines()[0])
    test = result.metrics["test"]
    return dg.MaterializeResult(
        metadata={
            "run": dg.MetadataValue.path(str(result.run_dir)),
            "metrics (test)": dg.MetadataValue.md(metrics_markdown(test)),
            "HR@10": test["overall"]["hr@10"],
            "NDCG@10": test["overall"]["ndcg@10"],
            "cold-start HR@10": test["cold_start"]["hr@10"],
            "epochs": result.epochs_run,
            "best epoch": result.best_epoch,
            "items without features": result.n_missing_features,
            "training seconds": round(result.seconds, 1),
        }
    )


@dg.asset_check(asset=ranker, description="The ranker beats the popularity baseline on NDCG@10.")
def beats_popularity(paths: LinkedOutPaths) -> dg.AssetCheckResult:
    ours = read_metrics(paths.runs / MAIN_VARIANT)["test"]["overall"]["ndcg@10"]
    popularity = train_run(
        paths.dataset,
        paths.store,
        paths.runs / "popularity",
        variant="popularity",
        fresh=True,
        progress=False,
    )
    floor = popularity.metrics["test"]["overall"]["ndcg@10"]
    return dg.AssetCheckResult(
        passed=ours > floor,
        metadata={"ranker NDCG@10": ours, "popularity NDCG@10": floor},
    )


@dg.asset(deps=[ranker], group_name=GROUP, code_version="1", kinds={"numpy"})
def item_embeddings(paths: LinkedOutPaths) -> dg.MaterializeResult:
    """Every item's vector, computed once from its stored features (store-and-retrieve): a query
    is then the user encoder, one matrix-vector product and a top-k."""
    summary = serving_summary(paths.runs / MAIN_VARIANT)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(summary.path)),
            "items": summary.n_items,
            "dimension": summary.dim,
            "bytes": summary.bytes,
            "query p50 ms (history -> top-10)": round(summary.p50_ms, 3),
        }
    )
