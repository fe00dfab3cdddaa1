"""The hyperparameter search (`linkedout tune`) as a job: trials of one variant's training on Ray
Tune, written into runs/search-<variant>/ with the chosen settings as best.yaml. Its run config
is a training step's (the same fields, fixing a setting for every trial) plus what to search.
It is an op job, not an asset: "Materialize all" in the UI must never start a search; a search
is launched on purpose (`tune_training_settings`), and best.yaml is then a `training`
resource's settings file."""

import dagster as dg
import pydantic

from dagster_project.assets.variants import RankerConfig
from dagster_project.errors import one_line_failures
from dagster_project.resources import LinkedOutPaths, RayCluster, TrainingSettings
from pipelines.variants import MAIN_VARIANT


class SearchConfig(RankerConfig):  # type: ignore[misc, valid-type]
    """A training step's settings, fixed for every trial, and the search's own."""

    variant: str = pydantic.Field(
        default=MAIN_VARIANT, description="the variant whose training is searched"
    )
    space: str | None = pydantic.Field(
        default=None,
        description="search space YAML (default: learning rates, weight decay, dropout, batch "
        "size, warmup)",
    )
    trials: int = pydantic.Field(default=16, description="trials to sample")
    max_concurrent: int | None = pydantic.Field(
        default=None, description="trials at once (default: the cluster's CPUs)"
    )
    grace_epochs: int = pydantic.Field(
        default=5, description="ASHA: epochs every trial trains before it can be stopped"
    )


@dg.op(tags={"kind": "ray"})
def hyperparameter_search(
    context: dg.OpExecutionContext,
    config: SearchConfig,
    paths: LinkedOutPaths,
    training: TrainingSettings,
    ray: RayCluster,
) -> dg.Output[None]:
    """Trials of one variant's training over a search space on Ray Tune (ASHA stops the weak
    ones), chosen on the validation split; runs/search-<variant>/best.yaml holds the chosen
    settings for `linkedout train --config`. Rerunning the same search resumes it."""
    from pipelines.tuning.results import trials_markdown
    from pipelines.tuning.search import tune_search

    values = {k: v for k, v in config.model_dump().items() if v is not None}
    search = {k: values.pop(k) for k in ("variant", "space", "trials", "grace_epochs")}
    max_concurrent = values.pop("max_concurrent", None)
    values.pop("workers", None)  # a trial trains in one process
    verify_store = values.pop("verify_store")
    ray.ensure_started()
    out = paths.runs / f"search-{search['variant']}"
    with one_line_failures():
        result = tune_search(
            paths.dataset,
            paths.store,
            out,
            search["variant"],
            space=search.get("space"),
            config=training.settings_file,
            train_overrides=values,
            trials=search["trials"],
            max_concurrent=max_concurrent,
            grace_epochs=search["grace_epochs"],
            verify_store=verify_store,
        )
    for line in result.lines[-2:]:
        context.log.info(line)
    best = result.best
    return dg.Output(
        None,
        metadata={
            "search": dg.MetadataValue.path(str(out)),
            "best config": dg.MetadataValue.path(str(result.best_config)),
            "trials": len(result.table),
            "best trial": str(best["trial"]),
            "best validation NDCG@10": float(best["valid_ndcg@10"]),
            "trials (table)": dg.MetadataValue.md(trials_markdown(result.table, result.params)),
        },
    )


@dg.job(
    description=(
        "Search a variant's training settings on Ray Tune (run config: the variant, the space, "
        "trials, and any training field to fix); writes runs/search-<variant>/best.yaml."
    )
)
def tune_training_settings() -> None:
    hyperparameter_search()
