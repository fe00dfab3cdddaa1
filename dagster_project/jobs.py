"""Jobs: the whole pipeline, incremental extraction, re-extraction, and training + evaluation."""

import dagster as dg

from dagster_project.assets.index import INDEX_KEYS
from dagster_project.assets.variants import VARIANT_KEYS

linkedout_full = dg.define_asset_job(
    "linkedout_full",
    selection=dg.AssetSelection.all(),
    description=(
        "Everything: ingest, catalog, extraction (incremental), every variant's training and "
        "embeddings, the report."
    ),
)

extract_new_videos = dg.define_asset_job(
    "extract_new_videos",
    selection=dg.AssetSelection.assets("video_catalog", "video_features"),
    description="Catalog the videos and extract the ones the store lacks.",
)

reextract_features = dg.define_asset_job(
    "reextract_features",
    selection=dg.AssetSelection.assets("video_catalog", "video_features"),
    description=(
        "Extract the whole catalog with the configured extractor. A changed extractor (model, "
        "prompt, layers, K, frames) writes a new store version; CURRENT moves when it is complete."
    ),
)

train_and_evaluate = dg.define_asset_job(
    "train_and_evaluate",
    selection=dg.AssetSelection.assets(
        "interactions",
        *VARIANT_KEYS,
        *INDEX_KEYS,
        "store_views",
        "evaluation_report",
    ),
    description=(
        "Train every variant on the CURRENT store, export their item vectors, index them, "
        "write the report."
    ),
)
