"""One training step per registered variant (recmodel/variants.py), built when the definitions
are: each materializes two assets, `ranker_<variant>` (the trained run) and
`item_embeddings_<variant>` (its serving vectors and the serving benchmark measured beside
them), and writes only runs/<variant>/.

The pipelines code that needs torch, faiss, Ray or Ray Tune is imported when a step runs (here
and in the other asset modules): the code location then loads without them, so the UI, the
daemon and each run's and step's process start faster, and code versions are read from the
modules' source (dagster_project/versions.py)."""

import dagster as dg
import pydantic

from dagster_project.assets.dataset import interactions
from dagster_project.assets.features import video_features
from dagster_project.automation import RETRAIN_ON_NEW_DATA
from dagster_project.errors import one_line_failures
from dagster_project.resources import LinkedOutPaths, TrainingSettings
from dagster_project.versions import code_version
from pipelines.training.settings import train_fields
from pipelines.variants import FLOOR_VARIANT, MAIN_VARIANT, all_variants, get_variant

GROUP = "linkedout"
TRAINING_CODE = code_version("pipelines.training.run")


# flat names: the asset graph labels a node with the last part of its key only
def ranker_key(variant: str) -> dg.AssetKey:
    return dg.AssetKey(f"ranker_{variant}")


def embeddings_key(variant: str) -> dg.AssetKey:
    return dg.AssetKey(f"item_embeddings_{variant}")


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
    fields["verify_store"] = (
        bool,
        pydantic.Field(
            default=True,
            description="refuse a store version that `linkedout store verify` would call "
            "FAILED (false: train on it anyway; rows are still checked as they are read)",
        ),
    )
    return fields


RankerConfig = pydantic.create_model(
    "RankerConfig",
    __base__=dg.Config,
    __doc__="Training settings for this run, over the `training` resource's settings file.",
    **_run_config_fields(),
)


def _ranker_metadata(result) -> dict:  # result: pipelines.training.run.TrainResult
    from pipelines.report import metrics_markdown

    test = result.metrics["test"]
    summary = result.metrics["training"]
    return {
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


def _embeddings_metadata(serving: dict) -> dict:
    query = serving["query"]
    return {
        "path": dg.MetadataValue.path(query["path"]),
        "items": query["n_items"],
        "dimension": query["dim"],
        "bytes": query["bytes"],
        "query p50 ms (history -> top-10)": round(query["p50_ms"], 3),
        "measured on": serving.get("machine", "?"),
    }


def variant_assets(variant: str) -> dg.AssetsDefinition:
    """The training step of `variant`: its run, then its item vectors, from one process."""
    specs = [
        dg.AssetSpec(
            ranker_key(variant),
            deps=[interactions, video_features],
            description=get_variant(variant).description
            + " Trained from scratch on the CURRENT feature store version and evaluated by "
            "full ranking on the test split (leave-one-out by time).",
            group_name=GROUP,
            code_version=TRAINING_CODE,
            kinds={"pytorch"},
            automation_condition=RETRAIN_ON_NEW_DATA,
        ),
        dg.AssetSpec(
            embeddings_key(variant),
            deps=[ranker_key(variant)],
            description=(
                f"Every item's vector from the {variant} run, computed once from its stored "
                "features (store-and-retrieve), with the query latency measured beside them."
            ),
            group_name=GROUP,
            code_version=TRAINING_CODE,
            kinds={"numpy"},
            automation_condition=RETRAIN_ON_NEW_DATA,
        ),
    ]

    @dg.multi_asset(name=f"train_{variant}", specs=specs, can_subset=False)
    def train(
        context: dg.AssetExecutionContext,
        config: RankerConfig,  # type: ignore[valid-type]
        paths: LinkedOutPaths,
        training: TrainingSettings,
    ):
        from pipelines.serving.index import vectors_checksum
        from pipelines.training.run import train_run

        values = {k: v for k, v in config.model_dump().items() if v is not None}
        workers = values.pop("workers", None)
        verify_store = values.pop("verify_store")
        with one_line_failures():
            result = train_run(
                paths.dataset,
                paths.store,
                paths.run(variant),
                variant=variant,
                workers=workers,
                config=training.settings_file,
                train_overrides=values,
                fresh=True,
                progress=False,
                verify_store=verify_store,
            )
        context.log.info(result.describe().splitlines()[0])
        yield dg.MaterializeResult(asset_key=ranker_key(variant), metadata=_ranker_metadata(result))
        yield dg.MaterializeResult(
            asset_key=embeddings_key(variant),
            metadata=_embeddings_metadata(result.serving),
            # the vectors' checksum: a retrain that left them unchanged leaves the index fresh
            data_version=dg.DataVersion(vectors_checksum(result.run_dir)),
        )

    return train


def training_steps() -> list[dg.AssetsDefinition]:
    """A training step for every variant registered now."""
    return [variant_assets(v.name) for v in all_variants()]


@dg.asset_check(
    asset=ranker_key(MAIN_VARIANT),
    additional_deps=[ranker_key(FLOOR_VARIANT)],
    description="The full ranker beats the popularity variant on NDCG@10 (both read from runs/).",
)
def beats_popularity(paths: LinkedOutPaths) -> dg.AssetCheckResult:
    from pipelines.serving.runfiles import read_metrics

    ours = read_metrics(paths.run(MAIN_VARIANT))["test"]["overall"]["ndcg@10"]
    floor = read_metrics(paths.run(FLOOR_VARIANT))["test"]["overall"]["ndcg@10"]
    return dg.AssetCheckResult(
        passed=ours > floor,
        metadata={"ranker NDCG@10": ours, "popularity NDCG@10": floor},
    )
