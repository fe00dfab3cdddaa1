"""The dataset in MicroLens layout: ingest.py validates pairs.csv and titles.csv into
interactions.parquet with the leave-one-out split; catalog.py lists the video files."""
