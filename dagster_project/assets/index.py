"""One item index per variant, `item_index_<variant>`, beside its `item_embeddings_<variant>`:
the approximate-nearest-neighbour index queries search, written into runs/<variant>/. One step
materializes whichever of them are selected.

The vectors' data version is their checksum, so after a retrain that left them unchanged the
index is not stale; materializing it anyway rebuilds nothing (pipelines.serving.index compares the
checksum with the one its record holds). Its own data version is the index file's checksum."""

import dagster as dg

from dagster_project.assets.variants import GROUP, embeddings_key
from dagster_project.automation import RETRAIN_ON_NEW_DATA
from dagster_project.errors import one_line_failures
from dagster_project.resources import LinkedOutPaths
from dagster_project.versions import code_version
from pipelines.variants import variant_names

INDEX_CODE = code_version("pipelines.serving.index")


def index_key(variant: str) -> dg.AssetKey:
    return dg.AssetKey(f"item_index_{variant}")


def _index_metadata(result) -> dict:  # result: pipelines.serving.index.IndexResult
    r, e = result.record, result.record.evaluation
    return {
        "path": dg.MetadataValue.path(str(result.run / r.index_file)),
        "rebuilt": result.built,
        "why": result.reason,
        "type": r.spec.kind,
        "faiss index": r.spec.factory,
        "search parameters": ", ".join(f"{k}={v}" for k, v in r.search.items()) or "-",
        "items": r.spec.n_items,
        "bytes": r.index_bytes,
        "build seconds": round(r.build_seconds, 2),
        "recall@10 (held-out queries)": round(e["recall_at_10"], 4),
        "same top-10 as the exact scan": round(e["same_top10"], 4),
        "index p50 ms": round(e["index_p50_ms"], 4),
        "index p99 ms": round(e["index_p99_ms"], 4),
        "exact scan p50 ms": round(e["exact_p50_ms"], 4),
        "exact scan p99 ms": round(e["exact_p99_ms"], 4),
        "vectors checksum": r.vectors_checksum,
    }


def _spec(variant: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        index_key(variant),
        deps=[embeddings_key(variant)],
        description=(
            f"The approximate-nearest-neighbour index over the {variant} run's item vectors "
            "(faiss; exact, HNSW or IVF by catalog size), with recall@10 and latency against "
            "the exact scan. Rebuilt only when the vectors changed."
        ),
        group_name=GROUP,
        code_version=INDEX_CODE,
        kinds={"faiss"},
        automation_condition=RETRAIN_ON_NEW_DATA,
    )


def index_step() -> dg.AssetsDefinition:
    """One step for every registered variant's index, each materialized alone when selected
    alone: on the demo an index takes milliseconds and a step process seconds (it imports the
    project), so a step per variant would cost the full job about a minute of CPU on two cores."""
    variants = variant_names()

    @dg.multi_asset(name="index_item_vectors", specs=[_spec(v) for v in variants], can_subset=True)
    def item_indexes(context: dg.AssetExecutionContext, paths: LinkedOutPaths):
        from pipelines.serving.index import index_run

        for variant in variants:
            if index_key(variant) not in context.selected_asset_keys:
                continue
            with one_line_failures():
                result = index_run(paths.run(variant), say=context.log.info)
            context.log.info(result.describe().splitlines()[0])
            yield dg.MaterializeResult(
                asset_key=index_key(variant),
                data_version=dg.DataVersion(result.record.index_checksum),
                metadata=_index_metadata(result),
            )

    return item_indexes


item_indexes = index_step()  # over the variants registered at import
