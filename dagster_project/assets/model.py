"""The trained ranker (the `full` cross-layer MoE variant) and its serving vectors."""

import dagster as dg
import pydantic

from dagster_project.assets.dataset import interactions
from dagster_project.assets.features import video_features
from dagster_project.resources import LinkedOutPaths, TrainingSettings
from pipelines.report import metrics_markdown, read_metrics
from pipelines.serve import serving_summary
from pipelines.train import train_run
from pipelines.train_config import train_fields

GROUP = "linkedout"
MAIN_VARIANT = "full"


def _run_config_fields() -> dict:
    """One optional field per TrainConfig field, under its own name, with its help text; a
    field left empty keeps the value of the training settings file."""
    fields: dict = {}
    for f in train_fields():
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        python = str if f.name.endswith("_bytes") else {"int": int, "float": float}.get(kind, str)
        help_text = f"{f.metadata['help']} (default: the settings file's, else {f.default})"
        fields[f.name] = (python | None, pydantic.Field(default=None, description=help_text))
    fields["workers"] = (
        int | None,
        pydantic.Field(default=None, description="Ray Train workers (default 1: this process)"),
    )
    return fields


RankerConfig = pydantic.create_model(
    "RankerConfig",
    __base__=dg.Config,
    __doc__="Training settings for this run, over the `training` resource's settings file.",
    **_run_config_fields(),
)


@dg.asset(
    deps=[interactions, video_features], group_name=GROUP, code_version="1", kinds={"pytorch"}
)
def ranker(
    context: dg.AssetExecutionContext,
    config: RankerConfig,  # type: ignore[valid-type]
    paths: LinkedOutPaths,
    training: TrainingSettings,
) -> dg.MaterializeResult:
    """The cross-layer knowledge-fusion MoE item encoder with a SASRec ranker, trained from
    scratch on the CURRENT feature store version and evaluated by full ranking on the test split
    (leave-one-out by time)."""
    values = {k: v for k, v in config.model_dump().items() if v is not None}
    workers = values.pop("workers", None)
    result = train_run(
        paths.dataset,
        paths.store,
        paths.runs / MAIN_VARIANT,
        variant=MAIN_VARIANT,
        workers=workers,
        config=training.config,
        train_overrides=values,
        fresh=True,
        progress=False,
    )
    context.log.info(result.describe().splitlines()[0])
    test = result.metrics["test"]
    summary = result.metrics["training"]
    return dg.MaterializeResult(
        metadata={
            "run": dg.MetadataValue.path(str(result.run_dir)),
            "metrics (test)": dg.MetadataValue.md(metrics_markdown(test)),
            "HR@10": test["overall"]["hr@10"],
            "NDCG@10": test["overall"]["ndcg@10"],
            "cold-start HR@10": test["cold_start"]["hr@10"],
            "epochs": result.epochs_run,
            "best epoch": result.best_epoch,
            "negatives": summary.get("negatives", "-"),
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
