"""The `linkedout` command line: every step the Dagster assets run, without Dagster."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import logging
import pickle
import re
import sys
from pathlib import Path

from featurizer.errors import StoreError
from pipelines.errors import PipelineError, one_line
from recmodel.config import TrainConfig, parse_bytes
from recmodel.variants import MAIN_VARIANT, variant_names

STORE_HELP = (
    "feature store: a local directory or s3://bucket/prefix (configured by AWS_ENDPOINT_URL, "
    "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP)"
)
log = logging.getLogger("linkedout")
TRAIN_FLAG_NAMES = tuple(f.name for f in dataclasses.fields(TrainConfig))


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


def cmd_demo_data(args: argparse.Namespace) -> None:
    from pipelines.demo_data import make_demo_dataset

    summary = make_demo_dataset(
        args.dir, n_videos=args.videos, n_users=args.users, seed=args.seed, force=args.force
    )
    print(summary.describe())


def cmd_tiny_model(args: argparse.Namespace) -> None:
    from featurizer.tiny_model import build_tiny_checkpoint

    path = build_tiny_checkpoint(args.dir, seed=args.seed, force=args.force, family=args.family)
    print(f"tiny {args.family} checkpoint (random weights, no world knowledge) written to {path}")


def cmd_ingest(args: argparse.Namespace) -> None:
    from pipelines.ingest import ingest

    result = ingest(args.dataset)
    print(result.describe())
    if result.rejected:
        for rejection in result.rejected[:20]:
            print(f"  rejected: {rejection}", file=sys.stderr)
        if len(result.rejected) > 20:
            print(f"  ... and {len(result.rejected) - 20} more", file=sys.stderr)


def cmd_extract(args: argparse.Namespace) -> None:
    from featurizer.store import location
    from pipelines.extract import extract_catalog, resolve_extractor

    location(args.store)  # a bad address is refused before a tiny checkpoint is built
    config = resolve_extractor(
        preset=args.preset, model=args.model, random_weights=args.random_weights
    )
    summary = extract_catalog(
        dataset=args.dataset,
        store=args.store,
        config=config,
        items=args.items,
        ray_address=args.ray_address,
        actors=args.actors,
        actor_resources=args.actor_resources,
    )
    print(summary.describe())


def cmd_store(args: argparse.Namespace) -> int:
    from pipelines.store_status import store_info, store_verify

    if args.action != "derive" and (
        args.layers is not None or args.k_tokens is not None or args.int8
    ):
        raise PipelineError(
            f"--layers, --k-tokens and --int8 go with `store derive`, not `{args.action}`"
        )
    if args.action != "compact" and args.retain is not None:
        raise PipelineError(f"--retain goes with `store compact`, not `{args.action}`")
    if args.retain is not None and not (args.retain >= 0 and args.retain != float("inf")):
        raise PipelineError(f"--retain: {args.retain:g} is not a number of seconds >= 0")
    if args.action == "upgrade":
        from pipelines.store_views import store_upgrade

        summary = store_upgrade(args.store)
        print(summary.describe())
        return 0
    if args.action == "compact":
        from pipelines.store_views import store_compact

        for done in store_compact(args.store, args.retain):
            print(done.describe())
        return 0
    if args.action == "derive":
        from pipelines.store_views import parse_layers, store_derive

        summary = store_derive(args.store, parse_layers(args.layers), args.k_tokens, args.int8)
        print(summary.describe())
        print(summary.view.fingerprint)
        return 0
    if args.action == "info":
        print(store_info(args.store))
        return 0
    report = store_verify(args.store)
    print(report.describe())
    return 0 if report.ok else 1


def _training_flags(args: argparse.Namespace) -> dict[str, object]:
    """The training settings given as flags (None: not given)."""
    return {
        name: getattr(args, f"train_{name}")
        for name in TRAIN_FLAG_NAMES
        if getattr(args, f"train_{name}") is not None
    }


def cmd_train(args: argparse.Namespace) -> None:
    from pipelines.train import train_run

    result = train_run(
        dataset=args.dataset,
        store=args.store,
        out=args.out,
        variant=args.variant,
        workers=args.workers,
        config=args.config,
        train_overrides=_training_flags(args),
        fresh=args.fresh,
        verify_store=not args.no_verify_store,
    )
    print(result.describe())


def cmd_evaluate(args: argparse.Namespace) -> None:
    from pipelines.serve import evaluate_run

    print(evaluate_run(args.run).describe())


def cmd_recommend(args: argparse.Namespace) -> None:
    from pipelines.serve import recommend, recommend_users

    if args.users is not None:
        if args.out is None:
            raise PipelineError("--users needs --out FILE.parquet")
        say = functools.partial(print, file=sys.stderr, flush=True)
        result = recommend_users(args.run, args.users, args.out, args.k, args.batch_size, say)
        print(result.describe())
        return
    for rank, (item, score) in enumerate(recommend(args.run, args.history, k=args.k), start=1):
        print(f"{rank:>3}  {item}  {score:.4f}")


def cmd_index(args: argparse.Namespace) -> None:
    from pipelines.index import index_run
    from recmodel.index import IndexSettings

    given = {
        "exact_max_items": args.exact_max_items,
        "memory_budget_bytes": args.memory_budget and parse_bytes(args.memory_budget),
        "target_recall": args.target_recall,
    }
    settings = IndexSettings(**{k: v for k, v in given.items() if v is not None})
    say = functools.partial(print, file=sys.stderr, flush=True)
    print(index_run(args.run, settings, force=args.force, say=say).describe())


def cmd_report(args: argparse.Namespace) -> None:
    from pipelines.report import write_report

    paths = write_report(args.run)
    print(f"report written: {paths.html} and {paths.markdown}")


def cmd_sweep(args: argparse.Namespace) -> None:
    from pipelines.report import sweep

    paths = sweep(
        args.dataset,
        args.store,
        args.out,
        variants=args.variants,
        main_variant=args.main,
        fresh=args.fresh,
        config=args.config,
        train_overrides=_training_flags(args),
        verify_store=not args.no_verify_store,
    )
    print(paths.table_markdown)
    print(f"report written: {paths.html} and {paths.markdown}")


def cmd_demo(args: argparse.Namespace) -> int:
    # the runner belongs to the orchestration (dagster_project.demo); pipelines starts it as a
    # program rather than importing the layer above it
    import subprocess

    command = [sys.executable, "-m", "dagster_project.demo", "--root", str(args.root)]
    return subprocess.run(command, check=False).returncode


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
        "Defaults are the supplementary's Table 6. --config names a YAML/JSON file (any of "
        "these fields, `workers`, and a `model:` mapping of model widths) or a shipped config "
        "(demo); flags override the file.",
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
    p.add_argument("dataset", type=Path)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("extract", help="extract video features into the store (incremental)")
    p.add_argument("--dataset", type=Path, required=True)
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
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--store", default=None, help=STORE_HELP + " (not needed for id_only)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--variant",
        default=MAIN_VARIANT,
        choices=variant_names(),
        metavar="VARIANT",
        help=f"one of {', '.join(variant_names())} (default: {MAIN_VARIANT})",
    )
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
    p.add_argument("--dataset", type=Path, required=True)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader's INFO lines at import
    try:
        status = args.func(args)  # None, or an exit status (store verify: 1 when FAILED)
    except (PipelineError, StoreError, OSError, ValueError) as exc:  # OSError: a full disk
        _error(args, one_line(exc))
        return 1
    except pickle.UnpicklingError as exc:
        _error(args, _refused_pickle(exc, args))
        return 1
    except KeyboardInterrupt:
        print(f"linkedout {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an unforeseen failure: still one line; -v shows where
        if args.verbose:
            raise
        _error(args, f"{type(exc).__name__}: {one_line(exc, 300)} (run with -v for the traceback)")
        return 1
    return int(status or 0)


def _error(args: argparse.Namespace, message: str) -> None:
    print(f"linkedout {args.command}: error: {message}", file=sys.stderr)


def _refused_pickle(exc: pickle.UnpicklingError, args: argparse.Namespace) -> str:
    """torch.load(weights_only=True) refused a file: say so, without torch's advice to load it
    with weights_only=False (which would run whatever the file asks for)."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    what = f" (it calls {found.group(1)})" if found else ""
    where = getattr(args, "run", None) or getattr(args, "out", None)
    return (
        f"{where or 'a model file'}: refused to load a file that holds more than tensors and "
        f"plain values{what}; it was read with torch.load(weights_only=True), so nothing in it ran"
    )


if __name__ == "__main__":
    sys.exit(main())
