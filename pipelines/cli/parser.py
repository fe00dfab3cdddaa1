"""The `linkedout` command line's arguments: one subcommand per step the Dagster assets run, the
training flags derived from TrainConfig's fields (their help, choices and bounds), the variant
choices from the registry."""

from __future__ import annotations

import argparse
import csv
import dataclasses
from pathlib import Path

from pipelines.cli.commands import (
    cmd_demo,
    cmd_demo_data,
    cmd_evaluate,
    cmd_extract,
    cmd_index,
    cmd_ingest,
    cmd_recommend,
    cmd_report,
    cmd_store,
    cmd_sweep,
    cmd_tiny_model,
    cmd_train,
    cmd_tune,
)
from recmodel.config import TrainConfig
from recmodel.variants import MAIN_VARIANT, variant_names

DATASET_HELP = (
    "dataset (pairs.csv, titles.csv, videos/<item>.mp4): a local directory or "
    "s3://bucket/prefix (the same AWS variables as the store)"
)
STORE_HELP = (
    "feature store: a local directory or s3://bucket/prefix (configured by AWS_ENDPOINT_URL, "
    "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP)"
)


def _resources(value: str) -> dict[str, float]:
    """ "extract_node=1,GPU=1" -> {"extract_node": 1.0, "GPU": 1.0}."""
    found = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, _, amount = part.partition("=")
        try:
            found[name.strip()] = float(amount)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not NAME=AMOUNT (e.g. extract_node=1)"
            ) from None
    return found


def _csv_list(value: str) -> list[str]:
    """A comma-separated list, read as one CSV record: an id holding a comma is quoted."""
    fields = next(csv.reader([value], skipinitialspace=True), [])
    return [v for v in (s.strip() for s in fields) if v]


def _add_variant_inputs(p: argparse.ArgumentParser, out_help: str | None) -> None:
    """--dataset, --store, --out and --variant: what one variant's training reads and writes."""
    p.add_argument("--dataset", required=True, help=DATASET_HELP)
    p.add_argument("--store", default=None, help=STORE_HELP + " (not needed for id_only)")
    p.add_argument("--out", type=Path, required=True, help=out_help)
    p.add_argument(
        "--variant",
        default=MAIN_VARIANT,
        choices=variant_names(),
        metavar="VARIANT",
        help=f"one of {', '.join(variant_names())} (default: {MAIN_VARIANT})",
    )


def _add_no_verify_store(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-verify-store",
        action="store_true",
        help="train on a store version that `linkedout store verify` would call FAILED (by "
        "default it is refused; rows are still checked against their checksums as they are read)",
    )


def _add_training_flags(p: argparse.ArgumentParser) -> None:
    """--config and one flag per TrainConfig field, documented by the field's own help."""
    group = p.add_argument_group(
        "training settings",
        "Defaults are for short runs on any catalog (1e-3 after a 10-step warmup, early "
        "stopping on validation). --config names a YAML/JSON file (any of these fields, "
        "`workers`, and a `model:` mapping of model widths), a shipped config (paper: the "
        "supplementary's Table 6) or a search's best.yaml; flags override the file.",
    )
    group.add_argument(
        "--config", default=None, metavar="FILE|NAME", help="training config file or name"
    )
    for f in dataclasses.fields(TrainConfig):
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        convert = {"int": int, "float": float}.get(kind, str)
        if f.name.endswith("_bytes"):
            convert = str  # "12GiB" as well as a number; TrainConfig parses it
        choices = f.metadata.get("choices")
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f"train_{f.name}",
            type=convert,
            default=None,
            choices=choices,
            metavar=None if choices else "SIZE" if f.name.endswith("_bytes") else kind.upper(),
            help=f"{f.metadata['help']} (default: {f.default})",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linkedout",
        description="LinkedOut: video-LLM features for video recommendation, as a batch pipeline.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo-data", help="write a synthetic MicroLens-layout dataset")
    p.add_argument("dir", type=Path)
    p.add_argument("--videos", type=int, default=48)
    p.add_argument("--users", type=int, default=160)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty DIR, replacing its pairs.csv, titles.csv and videos/v*.mp4",
    )
    p.set_defaults(func=cmd_demo_data)

    from featurizer.families import SUPPORTED_FAMILIES

    p = sub.add_parser(
        "tiny-model", help="write a tiny local checkpoint of a family (real architecture)"
    )
    p.add_argument("dir", type=Path)
    p.add_argument(
        "--family",
        choices=SUPPORTED_FAMILIES,
        default="llava_onevision",
        help="the model family to build (default: llava_onevision, the demo's)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--force", action="store_true", help="overwrite a checkpoint (or other files) in DIR"
    )
    p.set_defaults(func=cmd_tiny_model)

    p = sub.add_parser("ingest", help="validate pairs.csv/titles.csv into interactions.parquet")
    p.add_argument("dataset", help=DATASET_HELP)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("extract", help="extract video features into the store (incremental)")
    p.add_argument("--dataset", required=True, help=DATASET_HELP)
    p.add_argument("--store", required=True, help=STORE_HELP)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--preset", default=None, help="preset name or JSON file (default: demo)")
    group.add_argument("--model", default=None, help="local checkpoint directory (demo settings)")
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="build the preset's architecture untrained where its checkpoint is missing (GPU path check)",
    )
    p.add_argument(
        "--items",
        type=_csv_list,
        default=None,
        help="""only these items: a,b,c (quote an id that holds a comma: '"a,b",c')""",
    )
    p.add_argument(
        "--ray-address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)"
    )
    p.add_argument(
        "--actors", type=int, default=None, help="model actors (default: GPUs, or 1 on CPU)"
    )
    p.add_argument(
        "--actor-resources",
        type=_resources,
        default=None,
        metavar="NAME=N[,NAME=N]",
        help="Ray resources each model actor needs, to place the actors on the nodes of a "
        "cluster that offer them (e.g. extract_node=1)",
    )
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser(
        "store",
        help="inspect, verify, upgrade, compact or derive a compact view of a feature store",
    )
    p.add_argument("action", choices=["info", "verify", "derive", "upgrade", "compact"])
    p.add_argument("store", help=STORE_HELP + "; or one version: STORE/<fingerprint>")
    p.add_argument("--layers", default=None, help="derive: keep these tapped layers (e.g. 0,8,20)")
    p.add_argument(
        "--k-tokens",
        type=int,
        default=None,
        help="derive: tokens per layer (old ones merged further, the G new ones kept)",
    )
    p.add_argument(
        "--int8", action="store_true", help="derive: int8 values with a float16 scale per token"
    )
    p.add_argument(
        "--retain",
        type=float,
        default=None,
        metavar="SECONDS",
        help="compact: keep emptied shard objects this long for readers still holding an older "
        "index (default 3600; 0 deletes them at once)",
    )
    p.set_defaults(func=cmd_store)

    p = sub.add_parser("train", help="train a ranker variant into a run directory")
    _add_variant_inputs(p, out_help=None)
    p.add_argument(
        "--workers", type=int, default=None, help="Ray Train workers (default 1: this process)"
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="replace the run in --out (its own files only, once the new run has succeeded) "
        "instead of resuming it",
    )
    _add_no_verify_store(p)
    _add_training_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "tune",
        help="search training settings on Ray Tune (ASHA); writes OUT/best.yaml for train --config",
        description="Trials of `train` over a search space, chosen on the validation split; "
        "rerun with the same arguments to resume an interrupted search. The training flags "
        "fix a setting for every trial.",
    )
    _add_variant_inputs(p, out_help="the search directory (new or empty)")
    p.add_argument(
        "--space",
        default=None,
        metavar="FILE",
        help="search space YAML (default: learning rates, weight decay, dropout, batch size, "
        "warmup: pipelines/tuning/space.py's DEFAULT_SPACE_YAML)",
    )
    p.add_argument("--trials", type=int, default=16, help="trials to sample (default 16)")
    p.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        help="trials at once (default: the cluster's CPUs / --cpus-per-trial)",
    )
    p.add_argument("--cpus-per-trial", type=int, default=1, help="threads of a trial (default 1)")
    p.add_argument(
        "--grace-epochs",
        type=int,
        default=5,
        help="ASHA: epochs every trial trains before it can be stopped (default 5)",
    )
    p.add_argument(
        "--reduction-factor",
        type=int,
        default=3,
        help="ASHA: 1 of this many trials goes on at each milestone (default 3)",
    )
    p.add_argument("--search-seed", type=int, default=0, help="seed of the sampling (default 0)")
    p.add_argument(
        "--ray-address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)"
    )
    _add_no_verify_store(p)
    _add_training_flags(p)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("evaluate", help="recompute metrics.json of a run")
    p.add_argument("run", type=Path)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("recommend", help="top-k items for a watch history, or for a file of users")
    p.add_argument("run", type=Path)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--history", type=_csv_list, help="items watched, oldest first")
    source.add_argument(
        "--users",
        type=Path,
        help="Parquet (columns user, history: a list of items) or JSON Lines "
        '({"user": ..., "history": [...]}), scored a batch at a time',
    )
    p.add_argument("--out", type=Path, help="with --users: Parquet of user, rank, item, score")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=4096, help="users scored at a time")
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser("index", help="build the run's item index (only when its vectors changed)")
    p.add_argument("run", type=Path)
    p.add_argument("--force", action="store_true", help="rebuild even if it matches")
    p.add_argument(
        "--exact-max-items",
        type=int,
        help="catalogs smaller than this get an exact index (default 50000)",
    )
    p.add_argument(
        "--memory-budget", help="bytes the index may hold in RAM, e.g. 512MiB (default 1GiB)"
    )
    p.add_argument(
        "--target-recall",
        type=float,
        help="recall@10 the search parameters are tuned to (default 0.95)",
    )
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("report", help="write report.html and report.md for a run")
    p.add_argument("run", type=Path)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "sweep", help="train every variant on the same split, then write the main run's report"
    )
    p.add_argument("--dataset", required=True, help=DATASET_HELP)
    p.add_argument("--store", default=None, help=STORE_HELP + " (content variants need one)")
    p.add_argument("--out", type=Path, required=True, help="runs directory: OUT/<variant>/")
    p.add_argument(
        "--variants",
        type=_csv_list,
        default=None,
        help=f"comma-separated variants (default: all {len(variant_names())}: "
        f"{', '.join(variant_names())})",
    )
    p.add_argument(
        "--main",
        default=None,
        help=f"the run the report is written into (default: {MAIN_VARIANT})",
    )
    p.add_argument(
        "--fresh", action="store_true", help="retrain finished runs instead of reusing them"
    )
    _add_no_verify_store(p)
    _add_training_flags(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("demo", help="the whole demo through Dagster")
    p.add_argument("--root", type=Path, default=Path("data/demo"))
    p.set_defaults(func=cmd_demo)
    return parser
