"""Specifications of the Dagster project."""

from recmodel.config import VARIANTS

VARIANT_ASSETS = frozenset(
    {f"ranker_{v}" for v in VARIANTS} | {f"item_embeddings_{v}" for v in VARIANTS}
)
ASSETS = frozenset(
    {"interactions", "video_catalog", "video_features", "evaluation_report"} | VARIANT_ASSETS
)
