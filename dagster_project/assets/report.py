"""The evaluation report: reads every variant's run and writes the report into its own
directory. It trains nothing and measures nothing."""

import dagster as dg

from dagster_project.assets.features import video_features
from dagster_project.assets.index import index_key
from dagster_project.assets.variants import embeddings_key, ranker_key
from dagster_project.assets.views import store_views
from dagster_project.automation import RETRAIN_ON_NEW_DATA
from dagster_project.errors import one_line_failures
from dagster_project.resources import LinkedOutPaths
from dagster_project.versions import code_version
from pipelines.variants import MAIN_VARIANT, variant_names


def report_asset() -> dg.AssetsDefinition:
    """The report asset, downstream of every registered variant's run, vectors and index."""
    variants = variant_names()

    @dg.asset(
        deps=[video_features]
        + [ranker_key(v) for v in variants]
        + [embeddings_key(v) for v in variants]
        + [index_key(v) for v in variants]
        + [store_views],
        group_name="linkedout",
        code_version=code_version("pipelines.report.writer"),
        kinds={"html"},
        automation_condition=RETRAIN_ON_NEW_DATA,
    )
    def evaluation_report(
        context: dg.AssetExecutionContext, paths: LinkedOutPaths
    ) -> dg.MaterializeResult:
        """report.html (self-contained) and report.md from the stored runs: the ablation table
        (overall, cold-start, long-tail), the layer-gate analysis of the full run and the
        efficiency figures recorded by extraction and training."""
        from pipelines.report import write_report

        with one_line_failures():
            report = write_report(paths.run(MAIN_VARIANT), out=paths.report)
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

    return evaluation_report


evaluation_report = report_asset()  # over the variants registered at import
