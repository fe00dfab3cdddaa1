"""The asset graph: interactions and video_catalog → video_features → ranker → item_embeddings
→ item_index, → evaluation_report."""
