"""Catalog extraction with Ray Data: extract.py plans a run and commits it, pool.py drives the
decode tasks and the model actor pool, workers.py is what runs on the Ray workers."""
