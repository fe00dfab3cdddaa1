"""The `linkedout store` commands over featurizer.store: status.py reads (info, verify, what a
store holds against the catalog), commands.py writes versions (upgrade, compact, derive)."""
