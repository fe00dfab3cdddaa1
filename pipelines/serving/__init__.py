"""A trained run as it is served: runfiles.py names the run directory's files and reads them
for every reader; queries.py evaluates and recommends, benchmark.py measures a query and the
item encoder once, index.py builds and measures the item index."""
