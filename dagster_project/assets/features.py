"""The feature store version for the current extractor; materializing extracts only missing items.

One run at a time writes the store: `video_features` is in the STORE_POOL pool, and a deployment
sets that pool's limit to 1 with run granularity in its dagster.yaml (dagster_project/instance.py
writes these settings; the demo's DAGSTER_HOME gets them):

    concurrency:
      pools:
        granularity: run     # a second run stays QUEUED until the first ends
        default_limit: 1

(or `dagster instance concurrency set linkedout_feature_store 1` for this pool alone, with
`granularity: run`). Without it, two runs that start together still do not fail: the asset waits
for the store's lock up to STORE_LOCK_WAIT_SECONDS (the CLI does not wait: it says the store is
busy at once)."""

import dagster as dg

from dagster_project.assets.dataset import video_catalog
from dagster_project.errors import one_line_failures
from dagster_project.resources import ExtractorPreset, LinkedOutPaths, RayCluster
from dagster_project.versions import code_version
from pipelines.store.status import catalog_coverage, store_verification, uncovered_items

STORE_POOL = "linkedout_feature_store"  # one writer per store: see the module docstring
STORE_LOCK_WAIT_SECONDS = 1800.0  # the second line of defence when the pool is not limited
SHOWN_ITEMS = 5  # names in a check's "not yet extracted" line


class ExtractionConfig(dg.Config):
    """Restrict a run to some items (the sensor sends the new ones); empty means the catalog."""

    items: list[str] = []


@dg.asset(
    deps=[video_catalog],
    group_name="linkedout",
    code_version=code_version("pipelines.extraction.extract"),
    kinds={"ray", "zarr"},
    pool=STORE_POOL,
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
    fingerprint with its committed rows, so the variants show as stale when features change.
    While it runs it reports how far it is (a log line and an observation of this asset) at
    least every 30 s of extraction, and at the end. Runs of this asset queue behind each other
    in the STORE_POOL pool (module docstring)."""

    from pipelines.extraction.extract import extract_catalog

    def report_progress(done: int, total: int, seconds: float) -> None:
        rate = done / seconds if seconds > 0 else 0.0
        context.log.info(f"extracted {done} of {total} videos ({rate:.1f} videos/s)")
        context.log_event(
            dg.AssetObservation(
                asset_key=context.asset_key,
                metadata={"videos done": done, "videos to do": total, "videos/s": round(rate, 2)},
            )
        )

    with one_line_failures():
        summary = extract_catalog(
            dataset=paths.dataset,
            store=paths.store,
            config=extractor.config(),
            items=config.items or None,
            ray_address=ray.cluster_address(),
            ray_cpus=ray.num_cpus,
            make_current=True,
            progress=False,
            on_progress=report_progress,
            lock_wait=STORE_LOCK_WAIT_SECONDS,
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
            "requested": len(config.items) if config.items else "the catalog",
        },
    )


def _requested_items(context: dg.AssetCheckExecutionContext) -> list[str]:
    """The items this run asked `video_features` for (its run config); empty: the catalog."""
    ops = (context.run.run_config or {}).get("ops", {})
    return list(ops.get("video_features", {}).get("config", {}).get("items") or [])


@dg.asset_check(
    asset=video_features,
    description=(
        "The store verifies (layout, shapes, dtype, checksums, no NaN or Inf) and every item the "
        "run asked for (the catalog when it named none) has a row or a failure row; catalog "
        "coverage is reported, not judged."
    ),
    blocking=True,  # training on a store that fails this is meaningless: the variants wait
)
def store_integrity_check(
    context: dg.AssetCheckExecutionContext, paths: LinkedOutPaths, extractor: ExtractorPreset
) -> dg.AssetCheckResult:
    """Judges what the run was asked to do: a run of 64 new videos passes once those 64 are
    covered, though the catalog holds more not yet extracted (another run's, or the sensor's
    next). It reads the store and catalog.parquet only; it never extracts."""
    config = extractor.config()
    with one_line_failures():
        problems = store_verification(paths.store, config)
        coverage = catalog_coverage(paths.dataset, paths.store, config, shown=SHOWN_ITEMS)
        requested = _requested_items(context)
        if requested:
            left = uncovered_items(paths.store, config, requested)
            asked = f"{len(requested)} requested items"
        else:
            left, asked = coverage.first_missing, "the catalog"
        n_left = len(left) if requested else coverage.missing
    if n_left:
        shown = ", ".join(left[:SHOWN_ITEMS]) + (" ..." if n_left > SHOWN_ITEMS else "")
        problems.append(f"{n_left} of {asked} have neither a row nor a failure row: {shown}")
    not_yet = f"{coverage.missing}" + (
        f" ({', '.join(coverage.first_missing)}{' ...' if coverage.missing > SHOWN_ITEMS else ''})"
        if coverage.missing
        else ""
    )
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
            "requested": len(requested) if requested else "the catalog",
            "catalog covered": f"{coverage.covered} of {coverage.catalog}",
            "not yet extracted": not_yet,
        },
    )
