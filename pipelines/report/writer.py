"""write_report: a run's report.md, report.html and figures/*.png, from its stored files and
its sibling runs'; every file written whole (a temporary file renamed)."""

from __future__ import annotations

import base64
from pathlib import Path

from pipelines.errors import PipelineError
from pipelines.files import atomic_write_bytes
from pipelines.report.context import collect_context
from pipelines.report.document import comparison_table
from pipelines.report.html import render_html
from pipelines.report.layout import FIGURE_NAMES, ReportPaths, variant_label
from pipelines.report.markdown import render_md, table_md
from pipelines.report.sections import build_sections
from pipelines.serving.runfiles import FIGURES_DIR


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
        atomic_write_bytes(fig_dir / f"{figure.name}.png", figure.png)
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
    atomic_write_bytes(md_path, markdown.encode())
    heading = f"Run `{run.name}` on `{dataset_name}`"
    footer = (
        f"Written by `pipelines.report` at {ctx.written_at} from the files of "
        f"`{run.resolve()}`. † marks the paper's figures (MicroLens-100K), measured on other "
        "data."
    )
    html_path = out / "report.html"
    atomic_write_bytes(html_path, render_html(title, heading, meta, blocks, footer).encode())

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
