"""Specifications of the Dagster project."""

ASSETS = frozenset(
    {
        "interactions",
        "video_catalog",
        "video_features",
        "ranker",
        "item_embeddings",
        "evaluation_report",
    }
)
