"""The feature store version for the current extractor; materializing extracts only missing items."""

import dagster as dg

from dagster_project.assets.dataset import video_catalog
from dagster_project.errors import one_line_failures
from dagster_project.resources import ExtractorPreset, LinkedOutPaths, RayCluster
from dagster_project.versions import code_version
from pipelines.extraction.extract import extract_catalog
from pipelines.store.status import store_integrity


class ExtractionConfig(dg.Config):
    """Restrict a run to some items (the sensor sends the new ones); empty means the catalog."""

    items: list[str] = []


@dg.asset(
    deps=[video_catalog],
    group_name="linkedout",
    code_version=code_version(extract_catalog),
    kinds={"ray", "zarr"},
)
def video_features(
    context: dg.AssetExecutionContext,
    config: ExtractionConfig,
    paths: LinkedOutPaths,
    ray: RayCluster,
    extractor: ExtractorPreset,
) -> dg.MaterializeResult:
    """Hidden states of the frozen video LLM at the tapped layers (old tokens merged, new tokens
    kept; L×K×D float16 per video) in the fingerprinted Zarr store. Items already stored with the
    same content hash are skipped; a broken video becomes a failure row. CURRENT moves to this
    version only once it covers the catalog and verifies. The data version is the store
    fingerprint with its committed rows, so the variants show as stale when features change."""
    with one_line_failures():
        ray.ensure_started()
        summary = extract_catalog(
            dataset=paths.dataset,
            store=paths.store,
            config=extractor.config(),
            items=config.items or None,
            make_current=True,
            progress=False,
        )
    for note in summary.notes:  # e.g. "re-extracting 1 item whose row failed its check: v0003"
        context.log.info(note)
    for item, stage, error in summary.failures:
        context.log.warning(f"failed {item} ({stage}): {error}")
    context.log.info(summary.describe().splitlines()[0])
    return dg.MaterializeResult(
        data_version=dg.DataVersion(summary.data_version),
        metadata={
            "fingerprint": summary.fingerprint,
            "rows": summary.rows,
            "extracted": summary.extracted,
            "skipped (already stored)": summary.skipped,
            "failed": summary.failed,
            "s/video": round(summary.seconds_per_video, 3),
            "store": dg.MetadataValue.path(f"{str(paths.store).rstrip('/')}/{summary.fingerprint}"),
            "store bytes": summary.store_bytes,
            "current": summary.is_current,
            "prompts": max(1, len(summary.prompt_rows)),
            "rows per prompt (this run)": ", ".join(map(str, summary.prompt_rows)) or "0",
        },
    )


@dg.asset_check(
    asset=video_features,
    description="Every catalog item has a row or a failure row; shapes, dtype; no NaN or Inf.",
    blocking=True,  # training on a store that fails this is meaningless: the variants wait
)
def store_integrity_check(paths: LinkedOutPaths, extractor: ExtractorPreset) -> dg.AssetCheckResult:
    problems = store_integrity(paths.dataset, paths.store, extractor.config())
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none")},
    )
