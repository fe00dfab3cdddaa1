"""Everything learned: the cross-layer MoE item encoder, the ranker, training, metrics, serving."""
