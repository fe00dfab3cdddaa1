"""Specifications of the Dagster project."""

import dagster as dg

from recmodel.variants import variant_names

VARIANTS = variant_names()  # the registered variants

VARIANT_ASSETS = frozenset(
    {f"ranker_{v}" for v in VARIANTS}
    | {f"item_embeddings_{v}" for v in VARIANTS}
    | {f"item_index_{v}" for v in VARIANTS}
)
ASSETS = frozenset(
    {"interactions", "video_catalog", "video_features", "store_views", "evaluation_report"}
    | VARIANT_ASSETS
)


def materialization_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    """The metadata values of `asset`'s one materialization in `result`."""
    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == asset
    ]
    return {key: value.value for key, value in event.materialization.metadata.items()}
