"""The evaluation report: every variant on the same split, layer-gate analysis, efficiency."""

import dagster as dg

from dagster_project.assets.features import video_features
from dagster_project.assets.model import MAIN_VARIANT, item_embeddings, ranker
from dagster_project.resources import LinkedOutPaths, TrainingSettings
from pipelines.report import build_evaluation_report


@dg.asset(
    deps=[ranker, item_embeddings, video_features],
    group_name="linkedout",
    code_version="1",
    kinds={"html"},
)
def evaluation_report(
    context: dg.AssetExecutionContext, paths: LinkedOutPaths, training: TrainingSettings
) -> dg.MaterializeResult:
    """Trains the comparison variants on the same split, then writes report.html (self-contained)
    and report.md: the ablation table (overall, cold-start, long-tail), the layer-gate analysis
    and the efficiency figures."""
    report = build_evaluation_report(
        paths.dataset, paths.store, paths.runs, main_variant=MAIN_VARIANT, config=training.config
    )
    context.log.info(f"report written to {report.html}")
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.path(str(report.html)),
            "comparison (test)": dg.MetadataValue.md(report.table_markdown),
            **{
                f"figure: {name}": dg.MetadataValue.md(md)
                for name, md in report.figures_markdown.items()
            },
        }
    )
