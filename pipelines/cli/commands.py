"""What each `linkedout` command does: one function per subcommand, taking the parsed arguments
and calling the stage that does the work (imported when the command runs, so `--help` and the
light commands do not load torch or Ray). A command's return value is its exit status."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys

from pipelines.errors import PipelineError
from recmodel.config import TrainConfig, parse_bytes

TRAIN_FLAG_NAMES = tuple(f.name for f in dataclasses.fields(TrainConfig))


def _training_flags(args: argparse.Namespace) -> dict[str, object]:
    """The training settings given as flags (None: not given)."""
    return {
        name: getattr(args, f"train_{name}")
        for name in TRAIN_FLAG_NAMES
        if getattr(args, f"train_{name}") is not None
    }


def cmd_demo_data(args: argparse.Namespace) -> None:
    from pipelines.demo.generate import make_demo_dataset

    summary = make_demo_dataset(
        args.dir, n_videos=args.videos, n_users=args.users, seed=args.seed, force=args.force
    )
    print(summary.describe())


def cmd_tiny_model(args: argparse.Namespace) -> None:
    from featurizer.tiny_model import build_tiny_checkpoint

    path = build_tiny_checkpoint(args.dir, seed=args.seed, force=args.force, family=args.family)
    print(f"tiny {args.family} checkpoint (random weights, no world knowledge) written to {path}")


def cmd_ingest(args: argparse.Namespace) -> None:
    from pipelines.dataset.ingest import ingest

    result = ingest(args.dataset)
    print(result.describe())
    if result.rejected:
        for rejection in result.rejected[:20]:
            print(f"  rejected: {rejection}", file=sys.stderr)
        if len(result.rejected) > 20:
            print(f"  ... and {len(result.rejected) - 20} more", file=sys.stderr)


def cmd_extract(args: argparse.Namespace) -> None:
    from featurizer.store import location
    from pipelines.extraction.extract import extract_catalog
    from pipelines.extraction.preset import resolve_extractor

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
    from pipelines.store.status import store_info, store_verify

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
        from pipelines.store.commands import store_upgrade

        summary = store_upgrade(args.store)
        print(summary.describe())
        return 0
    if args.action == "compact":
        from pipelines.store.commands import store_compact

        for done in store_compact(args.store, args.retain):
            print(done.describe())
        return 0
    if args.action == "derive":
        from pipelines.store.commands import parse_layers, store_derive

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


def cmd_train(args: argparse.Namespace) -> None:
    from pipelines.training.run import train_run

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


def cmd_tune(args: argparse.Namespace) -> None:
    from pipelines.tuning.search import tune_search

    result = tune_search(
        args.dataset,
        args.store,
        args.out,
        args.variant,
        space=args.space,
        config=args.config,
        train_overrides=_training_flags(args),
        trials=args.trials,
        max_concurrent=args.max_concurrent,
        cpus_per_trial=args.cpus_per_trial,
        grace_epochs=args.grace_epochs,
        reduction_factor=args.reduction_factor,
        search_seed=args.search_seed,
        ray_address=args.ray_address,
        verify_store=not args.no_verify_store,
    )
    print(result.describe())


def cmd_evaluate(args: argparse.Namespace) -> None:
    from pipelines.serving.queries import evaluate_run

    print(evaluate_run(args.run).describe())


def cmd_recommend(args: argparse.Namespace) -> None:
    from pipelines.serving.queries import recommend, recommend_users

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
    from pipelines.serving.index import index_run
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
    from pipelines.training.sweep import sweep

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
