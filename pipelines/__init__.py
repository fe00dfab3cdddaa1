"""The steps over a whole dataset as plain functions, by stage, as the README's diagram runs:

    dataset/     ingest pairs.csv and titles.csv; the video catalog
    extraction/  the catalog through the frozen video LLM on Ray into the feature store
    store/       the store commands: info, verify, coverage; upgrade, compact, derive
    serving/     the run directory's files; queries, the serving benchmark, the item index
    training/    one variant into a run directory; settings, progress, Ray Train, the sweep,
                 compact-view training
    report/      the evaluation report, from stored files only
    demo/        the synthetic demo dataset

Imports point down this list's dependency order (dataset < extraction, store < serving <
report < training < demo; tests/test_layers.py checks the packages), and the `linkedout` CLI
(cli.py) sits on top. errors.py, files.py, hooks.py and ray_runtime.py serve every stage.
"""
