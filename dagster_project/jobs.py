"""Jobs: the whole pipeline, incremental extraction, re-extraction, and training + evaluation."""

import dagster as dg

linkedout_full = dg.define_asset_job(
    "linkedout_full",
    selection=dg.AssetSelection.all(),
    description="Everything: ingest, catalog, extraction (incremental), training, embeddings, report.",
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
        "interactions", "ranker", "item_embeddings", "evaluation_report"
    ),
    description="Train the ranker on the CURRENT store, export item vectors, write the report.",
)
