"""What a report is made from, gathered once from stored files: the run's metrics and config,
its sibling runs on the same split, the store version, the gates, the dataset statistics, the
serving record training wrote and the item index's record. Nothing here trains or times anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.errors import PipelineError
from pipelines.report.dataset import dataset_stats
from pipelines.report.gates import GateAnalysis, read_gates
from pipelines.report.layout import variant_label
from pipelines.report.mixture import PromptMixture, read_prompt_mixture
from pipelines.report.runs import same_split_runs, variant_of, view_runs
from pipelines.report.search import read_search, search_of
from pipelines.report.store import (
    commit_interval_estimate,
    in_a_bank,
    open_store,
    random_weights_reason,
    read_extraction_runs,
    store_version,
)
from pipelines.serving.benchmark import summary_from_record
from pipelines.serving.runfiles import (
    read_config,
    read_index_record,
    read_metrics,
    read_run_config,
    read_serving,
)
from recmodel.variants import bank_variant


@dataclass
class ReportContext:
    run: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    variant: str
    runs: dict[str, dict[str, Any]]
    excluded: dict[str, str]
    version: Path | None
    version_note: str
    store: Any
    extractor: dict[str, Any] | None
    gates: GateAnalysis | None
    written_at: str
    random_note: str | None = None
    dataset: dict[str, Any] | None = None
    dataset_error: str = ""
    serving: Any = None
    serving_error: str = ""
    measured_on: str = ""
    encoding: dict[str, Any] = field(default_factory=dict)
    extraction_runs: list[dict[str, Any]] = field(default_factory=list)
    extraction_estimate: float | None = None
    views: list[StoreViewRun] = field(default_factory=list)  # runs/views/, by view name
    prompts: PromptMixture | None = None  # of the prompt-bank variant's run beside this one
    bank_store: bool = False  # the store version is the first prompt of a prompt bank
    prompts_note: str = ""  # why it could not be read
    index: Any = None  # recmodel.index.IndexRecord of item_index.json, None where not built
    index_error: str = ""
    search: Any = None  # report.search.SearchRecord: the search the settings came from
    search_error: str = ""

    def find_variant(self, variant: str) -> str | None:
        """The run (directory name) of `variant` among the runs on this split, if any."""
        return next((n for n, m in self.runs.items() if m.get("variant") == variant), None)

    def test(self, name: str | None, group: str = "overall") -> dict[str, Any]:
        """A run's test metrics of one target group; {} for no run."""
        if name is None:
            return {}
        return self.runs.get(name, {}).get("test", {}).get(group, {})

    def label(self, name: str) -> str:
        """The report's name of a run: its variant's label."""
        return variant_label(self.runs.get(name, {}).get("variant", name))


@dataclass
class StoreViewRun:
    """A run of `full` on a compact store view: its test metrics and the view's row layout."""

    name: str
    test: dict[str, Any]
    fingerprint: str | None
    shape: tuple[int, int, int] | None  # (L, K, D)
    dtype: str
    row_bytes: int | None  # one item's row as stored
    derived_from: str | None  # the source version's fingerprint
    note: str = ""  # why the view's store could not be read


def collect_context(run: Path) -> ReportContext:
    metrics = read_metrics(run)
    config = read_run_config(run)  # a report describes a trained run: refused without one
    variant = variant_of(run.name, config, metrics)
    runs, excluded = same_split_runs(run, config, metrics)
    for name, m in runs.items():
        m.setdefault("variant", variant_of(name, read_config(run.parent / name), m))
    version, version_note = store_version(config)
    store = extractor = None
    if version is not None:
        from featurizer.store import StoreError

        try:
            store = open_store(version)
            extractor = store.extractor
        except StoreError as exc:
            version, version_note = None, str(exc)
    ctx = ReportContext(
        run=run,
        config=config,
        metrics=metrics,
        variant=variant,
        runs=runs,
        excluded=excluded,
        version=version,
        version_note=version_note,
        store=store,
        extractor=extractor,
        gates=read_gates(run),
        written_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )
    if extractor is not None:
        ctx.bank_store = in_a_bank(version)  # type: ignore[arg-type]
        ctx.random_note = random_weights_reason(extractor)
        ctx.extraction_runs = read_extraction_runs(store)
        ctx.extraction_estimate = commit_interval_estimate(store)
    ctx.views = _store_view_runs(run, config, metrics)
    bank = bank_variant()
    bank_run = ctx.find_variant(bank.name) if bank is not None else None
    if bank_run is not None:
        try:
            ctx.prompts = read_prompt_mixture(run.parent / bank_run)
        except PipelineError as exc:
            ctx.prompts_note = str(exc)
    try:
        ctx.dataset = dataset_stats(config, metrics, run, store)
    except (OSError, PipelineError, KeyError, ValueError, pa.ArrowException) as exc:
        ctx.dataset_error = str(exc)
    try:
        record = read_serving(run)
    except PipelineError as exc:
        record, ctx.serving_error = None, str(exc)
    if record is not None:
        ctx.serving = summary_from_record(record)
        ctx.encoding = dict(record.get("encoding") or {})
        ctx.measured_on = (
            f"{record.get('machine', '?')}, torch using {record.get('threads', '?')} threads, "
            f"at {record.get('measured_at', '?')}"
        )
    elif not ctx.serving_error:
        ctx.serving_error = "not recorded (the run was trained before serving.json was written)"
        ctx.encoding = {"skipped": "not recorded"}
    searched = search_of(config)
    if searched is not None:
        try:
            ctx.search = read_search(searched)
        except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
            ctx.search_error = f"{searched}: {exc}"
    try:
        ctx.index = read_index_record(run)
    except PipelineError as exc:
        ctx.index_error = str(exc)
    if ctx.index is None and not ctx.index_error:
        ctx.index_error = f"not built (`linkedout index {run}` builds it)"
    return ctx


def _store_view_runs(
    run: Path, config: dict[str, Any], metrics: dict[str, Any]
) -> list[StoreViewRun]:
    from featurizer.store import StoreError

    found = []
    for name, m in view_runs(run, config, metrics)[0].items():
        version, note = store_version(m["config"])
        view = StoreViewRun(name, m.get("test", {}), None, None, "float16", None, None, note)
        if version is not None:
            try:
                fs = open_store(version)
            except StoreError as exc:
                view.note = str(exc)
            else:
                e = fs.extractor
                view.fingerprint, view.shape, view.row_bytes = (
                    fs.fingerprint,
                    fs.shape_per_item,
                    fs.row_bytes,
                )
                view.dtype = str(e.get("dtype", "float16"))
                view.derived_from = (e.get("derived_from") or {}).get("fingerprint")
        found.append(view)
    return found
