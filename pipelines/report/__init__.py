"""Evaluation reports: every variant trained on the same split, the layer-gate analysis of the
main run, efficiency, the dataset and provenance, written into the main run's directory as

    RUN/report.html     self-contained (inline CSS, figures embedded as base64 PNG)
    RUN/report.md       the same content, figures linked as files
    RUN/figures/*.png

(or into another directory: the Dagster report writes its own). Sections, in this order:
summary, comparison, layer-gate analysis, efficiency, dataset, provenance. Every number is read
from stored files: the run files (metrics.json, config.json, gates.parquet, item_ids.parquet,
serving.json: the serving benchmark training recorded; item_index.json: the item index and
its recall and latency against the exact scan, measured when it was built), the dataset's
interactions.parquet and
the feature store (the extraction runs its index records); nothing is trained or timed here. The paper's figures
(MicroLens-100K, LinkedOut paper Tables 1 and 3-5, Figure 5; supplementary Tables 7-8) are
constants below and always marked as the paper's, measured on other data.

Layer-gate contributions. gates.parquet holds per item the gate weights pi_l (softmax over the
tapped layers) and the norms ||h_l|| of the layer experts' outputs. The fused vector is
z = sum_l pi_l h_l, so the magnitude a layer puts into z is pi_l ||h_l||. The report
normalises it per item, c_l = pi_l ||h_l|| / sum_k pi_k ||h_k||, so that c, like pi, sums to
one per item: the two heatmaps share a scale and their difference c - pi shows where a layer's
output norm amplifies (> 0) or damps (< 0) the weight the gate gave it (the supplementary's
Figure 1 plots pi_l * h_l without saying how it is scaled).

Extraction time is read from the extraction runs the store version records when the extractor
writes it (one JSON object per extraction run: extracted, seconds, ...); without it the report
says "not recorded" and adds an estimate from the commit times in the index.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines.errors import PipelineError
from pipelines.report.context import collect_context
from pipelines.report.gates import GateAnalysis, gaussian_kde, read_gates, scott_bandwidth
from pipelines.report.layout import (
    FIGURE_NAMES,
    FIGURES_DIR,
    SECTIONS,
    ReportPaths,
    variant_label,
)
from pipelines.report.measure import code_commit, random_weights_reason, read_extraction_runs
from pipelines.report.render import (
    comparison_markdown,
    comparison_table,
    metrics_markdown,
    render_html,
    render_md,
    table_md,
)
from pipelines.report.runs import read_metrics
from pipelines.report.sections import build_sections
from pipelines.train import train_sweep


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_report(run: Path, out: Path | None = None) -> ReportPaths:
    """report.md, report.html and figures/*.png for `run`, comparing it with the sibling runs
    trained on the same split (the sweep's out directory), written into `out` (default: the run
    directory itself). It only reads: every number comes from stored files."""
    run = Path(run)
    if not run.is_dir():
        raise PipelineError(f"{run} is not a run directory")
    out = Path(out) if out is not None else run
    ctx = collect_context(run)
    blocks, figures = build_sections(ctx)

    fig_dir = out / FIGURES_DIR
    fig_dir.mkdir(parents=True, exist_ok=True)
    for figure in figures:
        _atomic_write(fig_dir / f"{figure.name}.png", figure.png)
    for name in FIGURE_NAMES:  # figures of an earlier report this one has not drawn
        if name not in {f.name for f in figures}:
            (fig_dir / f"{name}.png").unlink(missing_ok=True)

    dataset_name = Path(ctx.config.get("dataset", "?")).name
    if ctx.config.get("dataset"):
        dataset_name = "/".join(Path(ctx.config["dataset"]).parts[-2:])
    meta = [f"variant {variant_label(ctx.variant)}"]
    meta.append(f"dataset `{dataset_name}`")
    if ctx.dataset:
        meta.append(f"{ctx.dataset['users']:,} users · {ctx.dataset['catalog']:,} items")
    if ctx.extractor:
        meta.append(f"store `{ctx.extractor.get('fingerprint')}`")
    meta.append(f"written {ctx.written_at}")
    title = f"LinkedOut evaluation report: {run.name}"
    markdown = render_md(title, " · ".join(meta), blocks)
    md_path = out / "report.md"
    _atomic_write(md_path, markdown.encode())
    heading = f"Run `{run.name}` on `{dataset_name}`"
    footer = (
        f"Written by `pipelines.report` at {ctx.written_at} from the files of "
        f"`{run.resolve()}`. † marks the paper's figures (MicroLens-100K), measured on other "
        "data."
    )
    html_path = out / "report.html"
    _atomic_write(html_path, render_html(title, heading, meta, blocks, footer).encode())

    table = comparison_table(ctx.runs, "overall", paper=True, main=run.name)
    figures_md = {
        f.name: f"![{f.title}](data:image/png;base64,{base64.b64encode(f.png).decode()})\n\n"
        f"*Figure {f.number}. {f.title}.* {f.caption}"
        for f in figures
    }
    return ReportPaths(
        html=html_path,
        markdown=md_path,
        table_markdown=table_md(table) if table else "(no test targets)",
        figures_markdown=figures_md,
    )


# =============================================================================================
# Sweeps


def _pick_main(variants: Sequence[str], main_variant: str | None) -> str:
    if main_variant:
        if main_variant not in variants:
            raise PipelineError(
                f"main variant {main_variant!r} is not among the swept variants "
                f"({', '.join(variants)})"
            )
        return main_variant
    from recmodel.variants import MAIN_VARIANT, get_variant

    if MAIN_VARIANT in variants:
        return MAIN_VARIANT
    learned = [v for v in variants if get_variant(v).learned]
    return (learned or list(variants))[-1]


def sweep(
    dataset: Path,
    store: Path | None,
    out: Path,
    variants: Sequence[str] | None = None,
    epochs: int | None = None,
    main_variant: str | None = None,
    *,
    fresh: bool = False,
    progress: bool = True,
    config: str | Path | None = None,
    model_overrides: dict[str, Any] | None = None,
    train_overrides: dict[str, Any] | None = None,
    verify_store: bool = True,
) -> ReportPaths:
    """Train `variants` (default: every registered one) on the same split into out/<variant>/,
    then write the report of the main run (`main_variant`; default `full` when swept).
    A finished run is only re-exported unless `fresh`; a store that would not verify is
    refused unless `verify_store` is False."""
    from recmodel.variants import get_variant, variant_names

    variants = list(dict.fromkeys(variants or variant_names()))
    if not variants:
        raise PipelineError("no variants to sweep")
    for v in variants:
        try:
            get_variant(v)
        except ValueError as exc:
            raise PipelineError(str(exc)) from None
    main = _pick_main(variants, main_variant)
    trained = train_sweep(
        dataset,
        store,
        out,
        variants,
        epochs=epochs,
        config=config,
        model_overrides=model_overrides,
        train_overrides=train_overrides,
        progress=progress,
        fresh=fresh,
        verify_store=verify_store,
    )
    if main not in trained:
        raise PipelineError(f"the main variant {main} was not trained (it needs a feature store)")
    return write_report(Path(out) / main)


__all__ = [
    "SECTIONS",
    "GateAnalysis",
    "ReportPaths",
    "code_commit",
    "comparison_markdown",
    "gaussian_kde",
    "metrics_markdown",
    "random_weights_reason",
    "read_extraction_runs",
    "read_gates",
    "read_metrics",
    "scott_bandwidth",
    "sweep",
    "write_report",
]
