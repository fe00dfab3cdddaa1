"""Evaluation reports: the comparison of every variant trained on the same split, written as
report.md and a self-contained report.html in the main run's directory."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.errors import PipelineError
from pipelines.train import train_sweep

METRICS = ("hr@10", "hr@20", "ndcg@10", "ndcg@20")
GROUPS = ("overall", "cold_start", "head", "mid", "tail")
SWEEP_VARIANTS = (
    "popularity",
    "id_only",
    "last_layer_last_token",
    "mean_pool_moe",
    "last_token_moe",
    "full",
    "full_id_fusion",
)


@dataclass
class ReportPaths:
    html: Path
    markdown: Path
    table_markdown: str = ""
    figures_markdown: dict[str, str] = field(default_factory=dict)


def read_metrics(run: Path) -> dict[str, Any]:
    path = Path(run) / "metrics.json"
    if not path.is_file():
        raise PipelineError(f"{path} not found: train or evaluate the run first")
    return json.loads(path.read_text())


def metrics_markdown(split: dict[str, Any]) -> str:
    """One split's metrics ({group: {n, hr@10, ...}}) as a markdown table."""
    lines = [
        "| group | n | " + " | ".join(m.upper() for m in METRICS) + " |",
        "|---|---:|" + "---:|" * len(METRICS),
    ]
    for group in GROUPS:
        if group in split:
            m = split[group]
            values = " | ".join(f"{m[k]:.4f}" if m["n"] else "–" for k in METRICS)
            lines.append(f"| {group} | {m['n']} | {values} |")
    return "\n".join(lines)


def comparison_markdown(runs: dict[str, dict[str, Any]], group: str = "overall") -> str:
    """Variants × metrics on the test split for one target group, the best of each column bold."""
    rows = {v: m["test"][group] for v, m in runs.items() if m["test"][group]["n"]}
    if not rows:
        return f"(no {group} test targets)"
    best = {k: max(r[k] for r in rows.values()) for k in METRICS}
    lines = [
        "| variant | " + " | ".join(m.upper() for m in METRICS) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    for variant, r in rows.items():
        cells = [f"**{r[k]:.4f}**" if r[k] == best[k] else f"{r[k]:.4f}" for k in METRICS]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(run: Path) -> ReportPaths:
    """report.md and report.html for `run`, comparing it with the sibling runs of the sweep."""
    run = Path(run)
    read_metrics(run)
    runs = {
        d.name: read_metrics(d)
        for d in sorted(run.parent.iterdir())
        if d.is_dir() and (d / "metrics.json").is_file() and d.name in SWEEP_VARIANTS
    }
    ordered = {v: runs[v] for v in SWEEP_VARIANTS if v in runs}
    sections = [f"# LinkedOut evaluation report: {run.name}", ""]
    for group in ("overall", "cold_start", "head", "mid", "tail"):
        sections += [
            f"## Test, {group.replace('_', '-')} targets",
            "",
            comparison_markdown(ordered, group),
            "",
        ]
    markdown = "\n".join(sections)
    md_path = run / "report.md"
    md_path.write_text(markdown)
    html_path = run / "report.html"
    html_path.write_text(
        f"<!doctype html><meta charset=utf-8><title>LinkedOut report</title><pre>{html.escape(markdown)}</pre>"
    )
    return ReportPaths(html_path, md_path, comparison_markdown(ordered, "overall"))


def build_evaluation_report(
    dataset: Path, store: Path, runs: Path, main_variant: str = "full", epochs: int | None = None
) -> ReportPaths:
    """Train every other variant of the sweep on the same split, then write the main run's report."""
    others = [v for v in SWEEP_VARIANTS if v != main_variant]
    train_sweep(dataset, store, runs, others, epochs=epochs, progress=False, fresh=True)
    return write_report(Path(runs) / main_variant)
