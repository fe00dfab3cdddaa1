"""Compact-view training: the views the report's efficiency section sets beside the full store,
each derived from the CURRENT version (store/commands.py: only what it lacks) and with the main
variant trained on it from scratch into RUNS/views/<view>/."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featurizer.store.derive import Derivation
from pipelines.errors import PipelineError
from pipelines.serving.runfiles import VIEW_RUNS_DIR
from pipelines.store.commands import parse_layers, store_derive
from pipelines.training.run import train_run
from recmodel.variants import MAIN_VARIANT

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViewSpec:
    """A compact view to derive and train `full` on: `name` is its run directory under
    runs/views/ and its label in the report."""

    name: str
    derivation: Derivation


def parse_view(text: str) -> ViewSpec:
    """'int8', 'k_tokens=32', 'layers=0,8,20', or several joined by '+' ('layers=0,8,20+int8');
    a one-line error naming the view for anything else."""
    layers: tuple[int, ...] | None = None
    k_tokens: int | None = None
    int8 = False
    for part in filter(None, text.strip().split("+")):
        key, _, value = part.partition("=")
        try:
            if key == "int8" and not value:
                int8 = True
            elif key == "k_tokens":
                k_tokens = int(value)
            elif key == "layers":
                layers = parse_layers(value)
            else:
                raise ValueError
        except (ValueError, PipelineError):
            raise PipelineError(
                f"store view {text!r}: {part!r} is not int8, k_tokens=K or layers=a,b,c"
            ) from None
    if layers is None and k_tokens is None and not int8:
        raise PipelineError(
            f"store view {text!r}: names no reduction (int8, k_tokens=K, layers=...)"
        )
    name = "+".join(
        ([f"layers-{'-'.join(map(str, layers))}"] if layers is not None else [])
        + ([f"k{k_tokens}"] if k_tokens is not None else [])
        + (["int8"] if int8 else [])
    )
    return ViewSpec(name, Derivation(layers=layers, k_tokens=k_tokens, int8=int8))


@dataclass
class ViewRun:
    spec: ViewSpec
    view: Path  # the view's version directory
    bytes_per_item: int
    result: Any  # training.run.TrainResult of the main variant on the view

    def metric(self, group: str, key: str) -> str:
        """A test metric, 4 decimals ("–" where the split has no such target, e.g. cold start)."""
        value = self.result.metrics["test"].get(group, {}).get(key)
        return "–" if value is None else f"{value:.4f}"

    def describe(self) -> str:
        return (
            f"view {self.spec.name} ({self.view.name}, {self.bytes_per_item:,} bytes per "
            f"video): full HR@10 {self.metric('overall', 'hr@10')}, NDCG@10 "
            f"{self.metric('overall', 'ndcg@10')}, cold-start HR@10 "
            f"{self.metric('cold_start', 'hr@10')}"
        )


def train_views(
    dataset: Path | str,
    store: Path,
    runs: Path,
    views: Sequence[ViewSpec],
    *,
    config: str | Path | None = None,
    progress: bool = False,
    say: Callable[[str], None] = log.info,
    **train_options: Any,
) -> list[ViewRun]:
    """Derive each view of `store`'s CURRENT version (only what it lacks) and train `full` on
    it from scratch into runs/views/<name>/, for the report to set beside the full store.
    One line per view derived and per view trained goes to `say`; `train_options`: train_run's
    (epochs, model_overrides, train_overrides)."""
    done = []
    for spec in views:
        d = spec.derivation
        summary = store_derive(store, layers=d.layers, k_tokens=d.k_tokens, int8=d.int8)
        say(f"store view {spec.name}: {summary.describe()}")
        result = train_run(
            dataset,
            summary.view.path,
            Path(runs) / VIEW_RUNS_DIR / spec.name,
            variant=MAIN_VARIANT,
            config=config,
            fresh=True,
            progress=progress,
            **train_options,
        )
        run = ViewRun(spec, summary.view.path, summary.view.row_bytes, result)
        say(run.describe())
        done.append(run)
    return done
