"""Jobs: the whole pipeline, incremental extraction, re-extraction, and training + evaluation."""

import dagster as dg

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
    # everything but extraction: the interactions, every variant's run, vectors and index, the
    # store views and the report (a variant registered later is in it too)
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets("video_catalog", "video_features"),
    description=(
        "Train every variant on the CURRENT store, export their item vectors, index them, "
        "write the report."
    ),
)
