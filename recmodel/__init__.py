"""Everything learned: the cross-layer MoE item encoder, the sequential ranker, training, metrics."""
