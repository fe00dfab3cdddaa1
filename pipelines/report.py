"""Evaluation reports: every variant trained on the same split, the layer-gate analysis of the
main run, efficiency, the dataset and provenance, written into the main run's directory as

    RUN/report.html     self-contained (inline CSS, figures embedded as base64 PNG)
    RUN/report.md       the same content, figures linked as files
    RUN/figures/*.png

Sections, in this order: summary, comparison, layer-gate analysis, efficiency, dataset,
provenance. Every number is computed from the run files (metrics.json, config.json,
gates.parquet, item_ids.parquet), the dataset's interactions.parquet and the feature store, or
measured when the report is written (item encoding, ranking latency); the paper's figures
(MicroLens-100K, LinkedOut paper Tables 1 and 3-5, Figure 5; supplementary Tables 7-8) are
constants below and always marked as the paper's, measured on other data.

Layer-gate contributions. gates.parquet holds per item the gate weights pi_l (softmax over the
tapped layers) and the norms ||h_l|| of the layer experts' outputs. The fused vector is
z = sum_l pi_l h_l, so the magnitude a layer puts into z is pi_l ||h_l||. The report
normalises it per item, c_l = pi_l ||h_l|| / sum_k pi_k ||h_k||, so that c, like pi, sums to
one per item: the two heatmaps share a scale and their difference c - pi shows where a layer's
output norm amplifies (> 0) or damps (< 0) the weight the gate gave it (the supplementary's
Figure 1 plots pi_l * h_l without saying how it is scaled).

Extraction time is read from STORE/<fingerprint>/extraction_runs.jsonl when the extractor
writes it (one JSON object per extraction run: extracted, seconds, ...); without it the report
says "not recorded" and adds an estimate from the commit times in index.parquet.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.errors import PipelineError
from pipelines.train import serving_summary, train_sweep

METRICS = ("hr@10", "hr@20", "ndcg@10", "ndcg@20")
METRIC_LABELS = {"hr@10": "HR@10", "hr@20": "HR@20", "ndcg@10": "NDCG@10", "ndcg@20": "NDCG@20"}
GROUPS = ("overall", "cold_start", "head", "mid", "tail")
GROUP_TITLES = {
    "overall": "All test targets",
    "cold_start": "Cold-start targets",
    "head": "Long tail: head items",
    "mid": "Long tail: mid items",
    "tail": "Long tail: tail items",
}
GROUP_SHORT = {
    "overall": "overall",
    "cold_start": "cold-start",
    "head": "head",
    "mid": "mid",
    "tail": "tail",
}
SWEEP_VARIANTS = (
    "popularity",
    "id_only",
    "last_layer_last_token",
    "mean_pool_moe",
    "last_token_moe",
    "full",
    "full_id_fusion",
)
VARIANT_LABELS = {
    "popularity": "Popularity",
    "id_only": "ID only (SASRec)",
    "last_layer_last_token": "Last layer, last token",
    "mean_pool_moe": "Mean pooling + MoE",
    "last_token_moe": "Last token + MoE",
    "full": "LinkedOut (full)",
    "full_id_fusion": "LinkedOut + ID fusion",
}
SECTIONS = (
    ("summary", "Summary"),
    ("comparison", "Comparison"),
    ("gates", "Layer-gate analysis"),
    ("efficiency", "Efficiency"),
    ("dataset", "Dataset"),
    ("provenance", "Provenance"),
)
EXTRACTION_RUNS_FILE = "extraction_runs.jsonl"
FIGURES_DIR = "figures"
FIGURE_NAMES = ("comparison", "gate_density", "gate_boxplot", "gate_heatmap")
HEATMAP_MAX_ITEMS = 64

# --- the paper's figures (MicroLens-100K; other data, a 7B backbone, 8 GPUs) -------------------
PAPER_NOTE = (
    "the paper's figures: LinkedOut paper, MicroLens-100K, LLaVA-OneVision 7B; other data, "
    "not comparable with this run"
)
# Tables 3 and 4 list HR@10, NDCG@10, HR@20, NDCG@20; stored here by metric name.
PAPER_METRICS: dict[str, tuple[str, str, dict[str, float]]] = {
    "id_only": (
        "SASRec",
        "Table 3",
        {"hr@10": 0.0909, "ndcg@10": 0.0517, "hr@20": 0.1278, "ndcg@20": 0.0610},
    ),
    "last_layer_last_token": (
        "Last layer last token",
        "Table 4",
        {"hr@10": 0.0763, "ndcg@10": 0.0404, "hr@20": 0.1121, "ndcg@20": 0.0494},
    ),
    "mean_pool_moe": (
        "Mean pooling+MoE",
        "Table 4",
        {"hr@10": 0.0888, "ndcg@10": 0.0471, "hr@20": 0.1291, "ndcg@20": 0.0572},
    ),
    "last_token_moe": (
        "Last token+MoE",
        "Table 4",
        {"hr@10": 0.0958, "ndcg@10": 0.0518, "hr@20": 0.1394, "ndcg@20": 0.0628},
    ),
    "full": (
        "LinkedOut (full)",
        "Tables 3-4",
        {"hr@10": 0.1015, "ndcg@10": 0.0548, "hr@20": 0.1477, "ndcg@20": 0.0664},
    ),
}
# Figure 5: mean gate contribution per layer (L12 is not stated in the text).
PAPER_GATE_PERCENT = {0: 16.4, 4: 0.5, 8: 40.9, 16: 6.7, 20: 20.5}
PAPER_EXTRACTION_S = 5.02  # s/video, batches of 100 on one H100 (section 4.5)
PAPER_MOE_MS = 5.1  # MoE fusion per query (Table 5 discussion)
PAPER_RANKING_MS = 0.846  # ranking per query
PAPER_QUERY_MS = 5.964  # Store-and-Retrieve total per query (Table 5)
PAPER_QPS = 168  # supplementary Table 8, one H100
PAPER_LAYOUT = (6, 64, 4096)  # supplementary Table 7: 3.15 MB/video, 3.15 TB/1M, 31.5 TB/10M
PAPER_STORE_MICROLENS = ("62.2 GB", 19_738)
PAPER_DATASET = {  # Table 1, MicroLens-100K
    "users": "100,000",
    "items": "19,738",
    "interactions": "719,405",
    "train": "478,355",
    "valid": "100,000",
    "test": "100,000",
    "seq_mean": "7.19",
    "seq_range": "5–15",
}

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ReportPaths:
    html: Path
    markdown: Path
    table_markdown: str = ""
    figures_markdown: dict[str, str] = field(default_factory=dict)


# =============================================================================================
# Reading runs


def read_metrics(run: Path) -> dict[str, Any]:
    path = Path(run) / "metrics.json"
    if not path.is_file():
        raise PipelineError(f"{path} not found: train or evaluate the run first")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise PipelineError(f"{path} is not valid JSON: {exc}") from None


def _read_config(run: Path) -> dict[str, Any]:
    path = Path(run) / "config.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {}


def _variant_of(name: str, config: dict[str, Any], metrics: dict[str, Any]) -> str:
    return str(config.get("variant") or metrics.get("variant") or name)


def _same_split_runs(
    run: Path, config: dict[str, Any], metrics: dict[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The sibling run directories trained on the same dataset and catalog as `run` (itself
    included), sweep variants first, keyed by directory name; and those left out, with why."""
    found: dict[str, dict[str, Any]] = {}
    excluded: dict[str, str] = {}
    n_test = metrics.get("test", {}).get("overall", {}).get("n")
    for d in sorted(run.parent.iterdir()):
        if not d.is_dir() or not (d / "metrics.json").is_file():
            continue
        if d.resolve() == run.resolve():
            found[d.name] = metrics
            continue
        try:
            other = read_metrics(d)
        except PipelineError as exc:
            excluded[d.name] = str(exc)
            continue
        other_config = _read_config(d)
        if other_config.get("dataset") != config.get("dataset"):
            excluded[d.name] = "trained on another dataset"
        elif other_config.get("n_items") != config.get("n_items"):
            excluded[d.name] = "another catalog (item count differs)"
        elif other.get("test", {}).get("overall", {}).get("n") != n_test:
            excluded[d.name] = "another test split"
        else:
            found[d.name] = other
    order = {v: i for i, v in enumerate(SWEEP_VARIANTS)}
    names = sorted(found, key=lambda n: (order.get(n, len(order)), n))
    return {n: found[n] for n in names}, excluded


# =============================================================================================
# Markdown tables (public helpers) and the document model behind both renderings


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def metrics_markdown(split: dict[str, Any]) -> str:
    """One split's metrics ({group: {n, hr@10, ...}}) as a markdown table."""
    lines = [
        "| group | n | " + " | ".join(METRIC_LABELS[m] for m in METRICS) + " |",
        "|---|---:|" + "---:|" * len(METRICS),
    ]
    for group in GROUPS:
        if group in split:
            m = split[group]
            values = " | ".join(_fmt(m.get(k)) if m["n"] else "–" for k in METRICS)
            lines.append(f"| {group} | {m['n']} | {values} |")
    return "\n".join(lines)


def comparison_markdown(
    runs: dict[str, dict[str, Any]], group: str = "overall", paper: bool = False
) -> str:
    """Variants x metrics on the test split for one target group, the best of each column bold;
    with `paper`, the paper's MicroLens-100K figures in extra columns marked as the paper's."""
    table = _comparison_table(runs, group, paper)
    if table is None:
        return f"(no {GROUP_SHORT.get(group, group)} test targets)"
    return _table_md(table)


@dataclass
class _Heading:
    text: str
    anchor: str


@dataclass
class _Para:
    text: str  # inline markup: **bold**, `code`
    kind: str = ""  # "", "lead", "callout", "muted"


@dataclass
class _Table:
    header: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    bold: set[tuple[int, int]] = field(default_factory=set)
    paper_cols: set[int] = field(default_factory=set)
    groups: list[tuple[str, int, str]] | None = None  # html header row: (label, span, class)
    row_class: dict[int, str] = field(default_factory=dict)
    caption: str = ""
    note: str = ""
    header_html: list[str] | None = None  # shorter headers where a group row says the rest
    variant_col: bool = False  # first column "Label `id`": HTML shows the label, id as tooltip
    kv: bool = False  # a key-value table: no header row
    wide: bool = False


@dataclass
class _Grid:
    tables: list[_Table]


@dataclass
class _Figure:
    name: str
    png: bytes
    title: str
    caption: str
    number: int = 0


@dataclass
class _Cards:
    items: list[tuple[str, str, str]]  # label, value, detail


_Block = _Heading | _Para | _Table | _Figure | _Cards | _Grid


def _comparison_table(
    runs: dict[str, dict[str, Any]], group: str, paper: bool, main: str | None = None
) -> _Table | None:
    rows_metrics = {
        name: m["test"][group]
        for name, m in runs.items()
        if group in m.get("test", {}) and m["test"][group].get("n")
    }
    if not rows_metrics:
        return None
    best = {}
    for k in METRICS:
        values = [r[k] for r in rows_metrics.values() if r.get(k) is not None]
        best[k] = max(values) if values else None
    header = ["variant"] + [METRIC_LABELS[k] for k in METRICS]
    numeric = [False] + [True] * len(METRICS)
    if paper:
        header += [f"{METRIC_LABELS[k]} (paper†)" for k in METRICS] + ["source†"]
        numeric += [True] * len(METRICS) + [False]
    table = _Table(header=header, rows=[], numeric=numeric, variant_col=True, wide=paper)
    if paper:
        table.header_html = ["variant"] + [METRIC_LABELS[k] for k in METRICS] * 2 + ["source"]
        start = 1 + len(METRICS)
        table.paper_cols = set(range(start, start + len(METRICS) + 1))
        table.groups = [
            ("", 1, ""),
            ("This run · test split", len(METRICS), ""),
            ("Paper† · MicroLens-100K, other data", len(METRICS) + 1, "paper"),
        ]
    for r, (name, m) in enumerate(rows_metrics.items()):
        variant = runs[name].get("variant", name)
        label = VARIANT_LABELS.get(variant, variant)
        cells = [f"{label} `{name}`"]
        for c, k in enumerate(METRICS, start=1):
            value = m.get(k)
            cells.append(_fmt(value))
            if value is not None and best[k] is not None and math.isclose(value, best[k]):
                table.bold.add((r, c))
        if paper:
            if variant in PAPER_METRICS:
                row_name, source, values = PAPER_METRICS[variant]
                cells += [_fmt(values[k]) for k in METRICS] + [f"{source}: {row_name}"]
            else:
                cells += ["–"] * len(METRICS) + ["–"]
        table.rows.append(cells)
        if name == main:
            table.row_class[r] = "main"
    return table


# =============================================================================================
# Rendering: markdown


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table_md(table: _Table) -> str:
    lines = [
        "| " + " | ".join(_md_cell(h) for h in table.header) + " |",
        "|" + "".join("---:|" if n else "---|" for n in table.numeric),
    ]
    for r, row in enumerate(table.rows):
        cells = [
            f"**{_md_cell(c)}**" if (r, i) in table.bold and c not in ("", "–") else _md_cell(c)
            for i, c in enumerate(row)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _render_md(title: str, meta: str, blocks: list[_Block]) -> str:
    out = [f"# {title}", "", meta, ""]
    for block in blocks:
        if isinstance(block, _Heading):
            out += [f"## {block.text}", ""]
        elif isinstance(block, _Para):
            text = f"> **Note.** {block.text}" if block.kind == "callout" else block.text
            out += [text, ""]
        elif isinstance(block, _Cards):
            out += [f"- **{label}:** {value} ({detail})" for label, value, detail in block.items]
            out.append("")
        elif isinstance(block, (_Table, _Grid)):
            for table in block.tables if isinstance(block, _Grid) else [block]:
                if table.caption:
                    out += [f"**{table.caption}**", ""]
                out += [_table_md(table), ""]
                if table.note:
                    out += [f"*{table.note}*", ""]
        elif isinstance(block, _Figure):
            out += [
                f"![{block.title}]({FIGURES_DIR}/{block.name}.png)",
                "",
                f"*Figure {block.number}. {block.title}.* {block.caption}",
                "",
            ]
    return "\n".join(out).rstrip() + "\n"


# =============================================================================================
# Rendering: HTML

_CSS = """
:root { --fg:#1c2330; --muted:#5f6b7c; --line:#e4e8ef; --accent:#1f5fbf; --bg:#f5f7fa;
  --paper:#f7f2e8; --paper-fg:#7a6543; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font:15px/1.6 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
.wrap { max-width:1120px; margin:0 auto; padding:0 32px; }
header.top { background:linear-gradient(135deg,#0f1e36,#1d3b66); color:#fff; padding:30px 0 24px; }
.eyebrow { text-transform:uppercase; letter-spacing:.12em; font-size:12px; color:#9fb7dc; }
h1 { font-size:28px; line-height:1.25; margin:6px 0 8px; font-weight:650; letter-spacing:-.01em; }
h1 code { background:rgba(255,255,255,.12); color:#fff; }
.meta { color:#c9d6ea; font-size:13.5px; }
.meta span + span::before { content:"·"; margin:0 8px; color:#7f95b8; }
nav.toc { margin:18px 0 0; font-size:13.5px; }
nav.toc a { color:#dbe6f7; text-decoration:none; margin-right:18px; border-bottom:1px solid transparent; }
nav.toc a:hover { border-bottom-color:#dbe6f7; }
section { background:#fff; border:1px solid var(--line); border-radius:12px;
  padding:6px 30px 22px; margin:22px 0; box-shadow:0 1px 2px rgba(16,24,40,.04); }
h2 { font-size:20px; margin:18px 0 12px; padding-bottom:8px; border-bottom:1px solid var(--line);
  font-weight:650; }
h2 .num { color:var(--accent); margin-right:8px; font-weight:600; }
p { margin:10px 0; max-width:100ch; }
p.lead { font-size:16px; max-width:none; }
p.muted, .note { color:var(--muted); font-size:13.5px; }
p.callout { max-width:none; background:#fff7e0; border:1px solid #f0d78c;
  border-left:4px solid #d99a00; padding:10px 14px; border-radius:6px; font-size:14px; }
code { font:12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  background:#eef1f6; padding:1px 5px; border-radius:4px; color:#33405a; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(140px,1fr)); gap:12px;
  margin:14px 0 8px; }
.card { border:1px solid var(--line); border-radius:10px; padding:12px 14px; background:#fbfcfe; }
.card .label { font-size:12px; color:var(--muted); text-transform:uppercase; letter-spacing:.05em; }
.card .value { font-size:24px; font-weight:650; margin:2px 0; font-variant-numeric:tabular-nums; }
.card .detail { font-size:12.5px; color:var(--muted); }
.tablewrap { overflow-x:auto; margin:8px 0 4px; }
table { border-collapse:collapse; font-size:13.5px; font-variant-numeric:tabular-nums; }
caption { caption-side:top; text-align:left; font-weight:600; font-size:14px; padding:6px 0 8px; }
th, td { padding:6px 11px; border-bottom:1px solid var(--line); vertical-align:top; }
thead th { font-size:12px; font-weight:600; color:var(--muted); text-align:left;
  border-bottom:2px solid #d5dbe5; white-space:nowrap; }
thead tr.groups th { border-bottom:1px solid var(--line); text-transform:uppercase;
  letter-spacing:.05em; font-size:11px; }
th.num, td.num { text-align:right; }
td strong { color:#0b3d91; font-weight:700; }
tbody tr:hover td { background:#f8fafd; }
tr.main td { background:#eef4ff; }
tr.main td:first-child { box-shadow:inset 3px 0 0 var(--accent); }
th.paper, td.paper { background:var(--paper); color:var(--paper-fg); font-style:italic; }
td.paper code { background:transparent; }
.grid2 { display:grid; grid-template-columns:1fr 1fr; gap:0 28px; }
.grid2 table { width:100%; }
table.wide { width:100%; }
table.wide td:first-child, table.wide th:first-child { white-space:nowrap; }
table.kv th { text-align:left; font-weight:600; color:var(--muted); white-space:nowrap;
  font-size:13px; width:1%; padding-right:24px; }
td code { font-size:11.5px; color:var(--muted); background:transparent; padding:0; margin-left:4px; }
figure { margin:20px 0 8px; }
figure img { display:block; max-width:100%; border:1px solid var(--line); border-radius:8px; }
figcaption { color:var(--muted); font-size:13.5px; margin-top:8px; max-width:none; }
figcaption b { color:var(--fg); }
footer { color:var(--muted); font-size:12.5px; padding:4px 0 36px; }
"""


def _inline_html(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return out


def _table_html(table: _Table) -> str:
    classes = " ".join(c for c, on in (("wide", table.wide), ("kv", table.kv)) if on)
    parts = [f'<div class="tablewrap"><table class="{classes}">']
    if table.caption:
        parts.append(f"<caption>{_inline_html(table.caption)}</caption>")
    if not table.kv:
        parts.append("<thead>")
        if table.groups:
            cells = "".join(
                f'<th colspan="{span}" class="{cls}">{html.escape(label)}</th>'
                for label, span, cls in table.groups
            )
            parts.append(f'<tr class="groups">{cells}</tr>')
        head = []
        for i, h in enumerate(table.header_html or table.header):
            classes = (["num"] if table.numeric[i] else []) + (
                ["paper"] if i in table.paper_cols else []
            )
            head.append(f'<th class="{" ".join(classes)}">{_inline_html(h)}</th>')
        parts.append("<tr>" + "".join(head) + "</tr></thead>")
    parts.append("<tbody>")
    for r, row in enumerate(table.rows):
        cells = []
        for i, c in enumerate(row):
            classes = (["num"] if table.numeric[i] else []) + (
                ["paper"] if i in table.paper_cols else []
            )
            content = _inline_html(c)
            match = re.fullmatch(r"(.*) `([^`]+)`", c) if i == 0 and table.variant_col else None
            if match:
                content = (
                    f'<span title="variant {html.escape(match[2])}">{html.escape(match[1])}</span>'
                )
            if (r, i) in table.bold and c not in ("", "–"):
                content = f"<strong>{content}</strong>"
            tag = "th" if table.kv and i == 0 else "td"
            cells.append(f'<{tag} class="{" ".join(classes)}">{content}</{tag}>')
        cls = table.row_class.get(r)
        parts.append((f'<tr class="{cls}">' if cls else "<tr>") + "".join(cells) + "</tr>")
    parts.append("</tbody></table></div>")
    if table.note:
        parts.append(f'<p class="note">{_inline_html(table.note)}</p>')
    return "".join(parts)


def _figure_html(figure: _Figure) -> str:
    data = base64.b64encode(figure.png).decode()
    return (
        f'<figure id="fig-{figure.name}"><img src="data:image/png;base64,{data}" '
        f'alt="{html.escape(figure.title)}"><figcaption><b>Figure {figure.number}. '
        f"{html.escape(figure.title)}.</b> {_inline_html(figure.caption)}</figcaption></figure>"
    )


def _render_html(
    title: str, heading: str, meta: list[str], blocks: list[_Block], footer: str
) -> str:
    toc = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in SECTIONS)
    body: list[str] = []
    open_section = False
    number = 0
    for block in blocks:
        if isinstance(block, _Heading):
            if open_section:
                body.append("</section>")
            number += 1
            body.append(
                f'<section id="{block.anchor}"><h2><span class="num">{number}</span>'
                f"{html.escape(block.text)}</h2>"
            )
            open_section = True
        elif isinstance(block, _Para):
            cls = f' class="{block.kind}"' if block.kind else ""
            text = _inline_html(block.text)
            if block.kind == "callout":
                text = f"<strong>Note.</strong> {text}"
            body.append(f"<p{cls}>{text}</p>")
        elif isinstance(block, _Cards):
            cards = "".join(
                f'<div class="card"><div class="label">{html.escape(label)}</div>'
                f'<div class="value">{html.escape(value)}</div>'
                f'<div class="detail">{_inline_html(detail)}</div></div>'
                for label, value, detail in block.items
            )
            body.append(f'<div class="cards">{cards}</div>')
        elif isinstance(block, _Table):
            body.append(_table_html(block))
        elif isinstance(block, _Grid):
            body.append(
                '<div class="grid2">' + "".join(_table_html(t) for t in block.tables) + "</div>"
            )
        elif isinstance(block, _Figure):
            body.append(_figure_html(block))
    if open_section:
        body.append("</section>")
    meta_html = "".join(f"<span>{_inline_html(m)}</span>" for m in meta)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        '<header class="top"><div class="wrap"><div class="eyebrow">LinkedOut · evaluation '
        f'report</div><h1>{_inline_html(heading)}</h1><div class="meta">{meta_html}</div>'
        f'<nav class="toc">{toc}</nav></div></header><main class="wrap">{"".join(body)}</main>'
        f'<footer class="wrap">{_inline_html(footer)}</footer></body></html>\n'
    )


# =============================================================================================
# Number formatting


def _num(n: int | float) -> str:
    return f"{n:,}" if isinstance(n, int) else f"{n:,.2f}"


def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def _rel(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{100 * (a - b) / b:+.1f}%".replace("-", "−")


def _bytes(n: float) -> str:
    """Decimal units with three significant digits, as the paper writes them (3.15 MB)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.3g} PB"


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g} ms" if ms >= 0.01 else f"{ms * 1e3:.3g} µs"


# =============================================================================================
# Layer gates


def gaussian_kde(
    values: np.ndarray, grid: np.ndarray, bandwidth: float | None = None
) -> np.ndarray:
    """Density of `values` at `grid` with a Gaussian kernel; by default Scott's bandwidth,
    h = std(values, ddof=1) * n ** (-1/5) (scipy.stats.gaussian_kde's 1-D default). Constant
    values get a narrow kernel (1e-3 of their magnitude) instead of a zero-width one."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    grid = np.asarray(grid, dtype=np.float64)
    if x.size == 0:
        return np.zeros_like(grid)
    if bandwidth is None:
        sigma = float(x.std(ddof=1)) if x.size > 1 else 0.0
        bandwidth = sigma * x.size ** (-1 / 5)
    if not bandwidth > 0:
        bandwidth = max(abs(float(x.mean())) * 1e-3, 1e-6)
    density = np.zeros_like(grid)
    for start in range(0, x.size, 16384):  # bounded memory: grid x chunk
        z = (grid[:, None] - x[None, start : start + 16384]) / bandwidth
        density += np.exp(-0.5 * z * z).sum(axis=1)
    return density / (x.size * bandwidth * math.sqrt(2 * math.pi))


def scott_bandwidth(values: np.ndarray) -> float:
    x = np.asarray(values, dtype=np.float64).ravel()
    return float(x.std(ddof=1)) * x.size ** (-1 / 5) if x.size > 1 else 0.0


@dataclass
class GateAnalysis:
    layers: list[int]
    items: list[str]
    gates: np.ndarray  # (F, L) pi
    norms: np.ndarray  # (F, L) ||h_l||
    id_gate: np.ndarray | None = None

    @property
    def contributions(self) -> np.ndarray:
        """pi_l ||h_l|| normalised per item to sum to one (see the module docstring)."""
        raw = self.gates * self.norms
        total = raw.sum(axis=1, keepdims=True)
        uniform = np.full_like(raw, 1.0 / raw.shape[1])
        return np.divide(raw, total, out=uniform, where=total > 0)

    @property
    def mean_gate(self) -> np.ndarray:
        return self.gates.mean(axis=0)

    @property
    def mean_contribution(self) -> np.ndarray:
        return self.contributions.mean(axis=0)

    @property
    def argmax_share(self) -> np.ndarray:
        counts = np.bincount(self.gates.argmax(axis=1), minlength=len(self.layers))
        return counts / max(len(self.items), 1)

    def dominance_sentence(self) -> str:
        """Which layer dominates on this data, in words, from the numbers."""
        L = len(self.layers)
        uniform = 1.0 / L
        mean = self.mean_gate
        top = int(mean.argmax())
        low = int(mean.argmin())
        contrib = self.mean_contribution
        ctop = int(contrib.argmax())
        name = f"L{self.layers[top]}"
        if mean[top] < uniform * 1.1:
            first = (
                f"No layer dominates on this data: the gate is close to uniform "
                f"(1/{L} = {_pct(uniform)}); the largest mean weight, {name}'s "
                f"{_pct(mean[top])}, is within 10% of it and the smallest, "
                f"L{self.layers[low]}'s, is {_pct(mean[low])}."
            )
        else:
            first = (
                f"**{name} dominates on this data**: it has the largest mean gate weight, "
                f"{_pct(mean[top])} against a uniform {_pct(uniform)}, and the largest weight "
                f"of all layers for {_pct(self.argmax_share[top], 0)} of the items; "
                f"L{self.layers[low]} gets the least ({_pct(mean[low])})."
            )
        if ctop == top:
            second = (
                f"Weighted by the experts' output norms, {name} also carries the largest "
                f"share of the fused vector ({_pct(contrib[ctop])})."
            )
        else:
            second = (
                f"Weighted by the experts' output norms, L{self.layers[ctop]} carries the "
                f"largest share of the fused vector ({_pct(contrib[ctop])}; {name}: "
                f"{_pct(contrib[top])})."
            )
        paper = (
            "The paper found L8 dominating on MicroLens-100K (40.9% mean contribution, Figure 5)†."
        )
        return f"{first} {second} {paper}"


def read_gates(run: Path) -> GateAnalysis | None:
    """gates.parquet of a run, or None when the variant has no layer gate (no rows)."""
    path = Path(run) / "gates.parquet"
    if not path.is_file():
        return None
    table = pq.read_table(path)
    if table.num_rows == 0:
        return None
    gate_cols = [c for c in table.column_names if re.fullmatch(r"gate_L\d+", c)]
    layers = [int(c[len("gate_L") :]) for c in gate_cols]
    if not layers or any(f"h_norm_L{layer}" not in table.column_names for layer in layers):
        return None
    gates = np.stack([table.column(f"gate_L{i}").to_numpy() for i in layers], axis=1)
    norms = np.stack([table.column(f"h_norm_L{i}").to_numpy() for i in layers], axis=1)
    id_gate = table.column("id_gate").to_numpy() if "id_gate" in table.column_names else None
    return GateAnalysis(
        layers=layers,
        items=table.column("item").to_pylist(),
        gates=gates.astype(np.float64),
        norms=norms.astype(np.float64),
        id_gate=None if id_gate is None else id_gate.astype(np.float64),
    )


# =============================================================================================
# Figures

_BLUE, _RED, _GREY = "#1f5fbf", "#c8372d", "#8a94a6"
_VARIANT_COLORS = {
    "popularity": "#c4cad4",
    "id_only": "#6b7585",
    "last_layer_last_token": "#9ecae1",
    "mean_pool_moe": "#6baed6",
    "last_token_moe": "#3182bd",
    "full": "#d9480f",
    "full_id_fusion": "#f08c00",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 9.5,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 10,
            "axes.titleweight": "bold",
            "axes.edgecolor": "#9aa3b2",
            "axes.labelcolor": "#3a4454",
            "xtick.color": "#3a4454",
            "ytick.color": "#3a4454",
            "figure.dpi": 110,
        }
    )
    return plt


def _png(fig: Any) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return buf.getvalue()


def _comparison_figure(runs: dict[str, dict[str, Any]]) -> bytes | None:
    groups = [
        g for g in GROUPS if any(m.get("test", {}).get(g, {}).get("n") for m in runs.values())
    ]
    if not groups or not runs:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5), sharey=False)
    names = list(runs)
    width = 0.8 / len(names)
    x = np.arange(len(groups))
    for ax, metric in zip(axes, ("hr@10", "ndcg@10"), strict=True):
        for i, name in enumerate(names):
            test = runs[name].get("test", {})
            values = [test.get(g, {}).get(metric) or 0.0 for g in groups]
            variant = runs[name].get("variant", name)
            ax.bar(
                x - 0.4 + width * (i + 0.5),
                values,
                width * 0.92,
                label=VARIANT_LABELS.get(variant, name),
                color=_VARIANT_COLORS.get(variant, _GREY),
            )
        ax.set_xticks(x, [GROUP_SHORT[g] for g in groups])
        ax.set_title(f"{METRIC_LABELS[metric]} on the test split")
        ax.grid(axis="y", color="#e6e9ef", linewidth=0.8)
        ax.set_axisbelow(True)
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8.5)
    fig.tight_layout()
    return _png(fig)


def _density_figure(g: GateAnalysis) -> bytes:
    plt = _pyplot()
    L = len(g.layers)
    cols = min(L, 3)
    rows = math.ceil(L / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(10.5, 2.5 * rows + 0.3), squeeze=False)
    bandwidths = [scott_bandwidth(g.gates[:, j]) for j in range(L)]
    pad = 3 * max([b for b in bandwidths if b > 0] or [1e-3])
    lo = max(0.0, float(g.gates.min()) - pad)
    hi = min(1.0, float(g.gates.max()) + pad)
    grid = np.linspace(lo, hi, 256)
    for j, layer in enumerate(g.layers):
        ax = axes[j // cols][j % cols]
        values = g.gates[:, j]
        density = gaussian_kde(values, grid)
        ax.fill_between(grid, density, color=_BLUE, alpha=0.25, linewidth=0)
        ax.plot(grid, density, color=_BLUE, linewidth=1.4)
        ax.axvline(values.mean(), color=_RED, linestyle="--", linewidth=1.0)
        ax.axvline(1.0 / L, color=_GREY, linestyle=":", linewidth=1.0)
        ax.set_title(f"L{layer} · mean {_pct(values.mean())}")
        ax.set_yticks([])
        ax.set_xlim(lo, hi)
    for j in range(L, rows * cols):
        axes[j // cols][j % cols].axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("gate weight π")
    fig.tight_layout()
    return _png(fig)


def _boxplot_figure(g: GateAnalysis) -> bytes:
    plt = _pyplot()
    L = len(g.layers)
    fig, ax = plt.subplots(figsize=(10.5, 3.8))
    ax.boxplot(
        [g.gates[:, j] for j in range(L)],
        tick_labels=[f"L{layer}" for layer in g.layers],
        showmeans=True,
        meanline=True,
        widths=0.55,
        patch_artist=True,
        boxprops={"facecolor": "#e8effa", "edgecolor": "#5b7bb0"},
        medianprops={"color": _RED, "linewidth": 1.6},
        meanprops={"color": _BLUE, "linestyle": "--", "linewidth": 1.4},
        whiskerprops={"color": "#5b7bb0"},
        capprops={"color": "#5b7bb0"},
        flierprops={"marker": ".", "markersize": 3, "markeredgecolor": "#8a94a6"},
    )
    ax.axhline(1.0 / L, color=_GREY, linestyle=":", linewidth=1.0)
    top, bottom = float(g.gates.max()), float(g.gates.min())
    span = max(top - bottom, 1e-6)
    ax.set_ylim(bottom - 0.08 * span, top + 0.22 * span)
    for j, mean in enumerate(g.mean_gate):
        ax.annotate(
            _pct(mean),
            (j + 1, top + 0.08 * span),
            ha="center",
            fontsize=10,
            fontweight="bold",
            color="#1c2330",
        )
    ax.set_ylabel("gate weight π")
    ax.grid(axis="y", color="#e6e9ef", linewidth=0.8)
    ax.set_axisbelow(True)
    fig.tight_layout()
    return _png(fig)


def _heatmap_rows(g: GateAnalysis) -> np.ndarray:
    """Items sorted by their top layer, then by that layer's weight; at most
    HEATMAP_MAX_ITEMS, evenly spaced over the sorted list."""
    top = g.gates.argmax(axis=1)
    order = np.lexsort((-g.gates[np.arange(len(top)), top], top))
    if len(order) > HEATMAP_MAX_ITEMS:
        order = order[np.linspace(0, len(order) - 1, HEATMAP_MAX_ITEMS).round().astype(int)]
    return order


def _heatmap_figure(g: GateAnalysis) -> bytes:
    plt = _pyplot()
    rows = _heatmap_rows(g)
    gates, contrib = g.gates[rows], g.contributions[rows]
    diff = contrib - gates
    height = min(9.0, 2.0 + 0.12 * len(rows))
    fig, axes = plt.subplots(1, 3, figsize=(12, height))
    vmin = float(min(gates.min(), contrib.min()))
    vmax = float(max(gates.max(), contrib.max()))
    dmax = float(np.abs(diff).max()) or 1e-6
    panels = (
        ("Gate weights π", gates, "viridis", vmin, vmax),
        ("Actual contributions c (π·‖h‖, per item)", contrib, "viridis", vmin, vmax),
        ("Difference c − π", diff, "RdBu_r", -dmax, dmax),
    )
    labels = [f"L{layer}" for layer in g.layers]
    for ax, (title, data, cmap, lo, hi) in zip(axes, panels, strict=True):
        im = ax.imshow(data, aspect="auto", cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(title)
        ax.set_xticks(range(len(labels)), labels)
        if len(rows) <= 40:
            ax.set_yticks(range(len(rows)), [g.items[i] for i in rows], fontsize=7)
        else:
            ax.set_yticks([])
        ax.spines[:].set_visible(False)
        fig.colorbar(im, ax=ax, fraction=0.05, pad=0.03)
    axes[0].set_ylabel("item")
    fig.tight_layout()
    return _png(fig)


# =============================================================================================
# Store, extractor, efficiency


def _store_version(config: dict[str, Any]) -> tuple[Path | None, str]:
    """The store version the run was trained on, or None and why not."""
    store = config.get("store") or {}
    path, fingerprint = store.get("path"), store.get("fingerprint")
    if not path or not fingerprint:
        return None, "the run was trained without a feature store"
    version = Path(path) / fingerprint
    if not (version / "extractor.json").is_file():
        return None, f"store version {version} not found"
    return version, ""


def _open_store(version: Path) -> Any:
    from featurizer.store import FeatureStore

    return FeatureStore.open(version)


def random_weights_reason(
    extractor: dict[str, Any], checkpoints: Sequence[Path] | None = None
) -> str | None:
    """Why the extractor's features carry no world knowledge, or None. Either extractor.json
    records `random_weights`, or its model identity (featurizer.config.model_identity: a hash
    of a local checkpoint's config and weight files) is that of a local checkpoint whose
    README says its weights are random: by default the demo preset's checkpoint
    (data/tiny-model, from the working directory or the repository)."""
    if extractor.get("random_weights"):
        return (
            "extractor.json records `random_weights: true` (the model was built from its "
            "architecture with random weights)"
        )
    from featurizer.config import load_preset, model_identity

    model = str(extractor.get("model", ""))
    if checkpoints is None:
        try:
            demo = Path(load_preset("demo").model)
        except (OSError, ValueError):
            return None
        checkpoints = [demo] if demo.is_absolute() else [Path.cwd() / demo, REPO_ROOT / demo]
    for candidate in dict.fromkeys(Path(c).resolve() for c in checkpoints):
        readme = candidate / "README.md"
        if not readme.is_file() or model_identity(str(candidate)) != model:
            continue
        if re.search(
            r"random(ly initiali[sz]ed)?\W+weights|weights\W+\**random",
            readme.read_text(errors="replace"),
            re.I,
        ):
            return (
                f"the extractor's model (`{model}`) is the checkpoint at `{candidate}`, whose "
                "README says its weights are random"
            )
    return None


def read_extraction_runs(version: Path) -> list[dict[str, Any]]:
    """The extraction summaries the extractor appended to extraction_runs.jsonl (empty when
    the file is absent); unreadable lines are skipped."""
    path = Path(version) / EXTRACTION_RUNS_FILE
    if not path.is_file():
        return []
    runs = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            runs.append(value)
    return runs


def _commit_interval_estimate(store: Any) -> float | None:
    """Median seconds between consecutive commits in index.parquet: the steady-state
    extraction time per video (start-up excluded; gaps between runs ignored by the median)."""
    column = store.index_table().column("extracted_at")
    if len(column) < 3:
        return None
    times = np.sort(column.cast(pa.int64()).to_numpy()) / 1e6
    return float(np.median(np.diff(times)))


def _measure_item_encoding(run: Path, version: Path | None, batch: int = 64) -> dict[str, Any]:
    """Time the run's item encoder on `batch` items read from the store: ms per item in the
    batch, one item alone, and the store read per item."""
    import torch

    from recmodel.data import FEATURE_VIEWS, reduce_features
    from recmodel.serving import load_model_file, read_item_ids
    from recmodel.variants import build_model

    cfg, state = load_model_file(run)
    if not cfg.uses_features:
        what = "an ID-embedding lookup" if cfg.variant == "id_only" else "no item encoder"
        return {"skipped": f"variant {cfg.variant} has {what}"}
    if version is None:
        return {"skipped": "no feature store"}
    model = build_model(cfg)
    model.load_state_dict(state)
    model.eval()
    store = _open_store(version)
    index = store.index()
    pairs = [(i, index[item]) for i, item in enumerate(read_item_ids(run)) if item in index]
    pairs = pairs[:batch]
    if not pairs:
        return {"skipped": "no item of the catalog has features in the store"}
    rows = np.array([r for _, r in pairs], dtype=np.int64)
    t0 = time.perf_counter()
    block = store.read_rows(rows)
    read_s = time.perf_counter() - t0
    features = torch.from_numpy(
        np.ascontiguousarray(reduce_features(block, FEATURE_VIEWS[cfg.variant]))
    )
    items = torch.tensor([i for i, _ in pairs])
    has = torch.ones(len(pairs), dtype=torch.bool)

    def timed(n: int, repeats: int) -> float:
        samples = []
        with torch.inference_mode():
            model.items(items[:n], features[:n], has[:n])  # warm-up
            for _ in range(repeats):
                t = time.perf_counter()
                model.items(items[:n], features[:n], has[:n])
                samples.append(time.perf_counter() - t)
        return float(np.median(samples))

    batch_s = timed(len(pairs), 5)
    single_s = timed(1, 15)
    return {
        "batch": len(pairs),
        "per_item_s": batch_s / len(pairs),
        "single_s": single_s,
        "read_per_item_s": read_s / len(pairs),
        "threads": torch.get_num_threads(),
    }


# =============================================================================================
# Dataset statistics


def _dataset_stats(
    config: dict[str, Any], metrics: dict[str, Any], run: Path, store: Any
) -> dict[str, Any]:
    from pipelines.ingest import read_interactions

    dataset = Path(config.get("dataset", ""))
    stats: dict[str, Any] = {"path": dataset}
    table = read_interactions(dataset)
    users = table.column("user").to_numpy(zero_copy_only=False)
    _, lengths = np.unique(users, return_counts=True)
    splits = table.column("split").to_numpy(zero_copy_only=False)
    stats["users"] = len(lengths)
    stats["interactions"] = table.num_rows
    stats["interaction_items"] = len(set(table.column("item").to_pylist()))
    for name in ("train", "valid", "test"):
        stats[name] = int((splits == name).sum())
    stats["seq_mean"] = float(lengths.mean()) if len(lengths) else 0.0
    stats["seq_median"] = float(np.median(lengths)) if len(lengths) else 0.0
    stats["seq_min"] = int(lengths.min()) if len(lengths) else 0
    stats["seq_max"] = int(lengths.max()) if len(lengths) else 0
    max_history = int(config.get("model", {}).get("max_history", 10))
    stats["test_history_mean"] = float(np.minimum(lengths - 1, max_history).mean())
    stats["max_history"] = max_history
    ids = pq.read_table(run / "item_ids.parquet")
    stats["catalog"] = ids.num_rows
    stats["cold_items"] = int((ids.column("train_count").to_numpy() == 0).sum())
    test = metrics.get("test", {})
    n_test = test.get("overall", {}).get("n") or 0
    stats["cold_targets"] = test.get("cold_start", {}).get("n") or 0
    stats["cold_share"] = stats["cold_targets"] / n_test if n_test else 0.0
    stats["terciles"] = test.get("popularity_thresholds")
    videos_dir = dataset / "videos"
    video_items = (
        {p.name[:-4] for p in videos_dir.iterdir() if p.name.endswith(".mp4")}
        if videos_dir.is_dir()
        else set()
    )
    catalog_items = set(ids.column("item").to_pylist())
    stats["with_video"] = len(catalog_items & video_items)
    stats["without_video"] = len(catalog_items - video_items)
    stats["synthetic"] = (dataset / "topics.csv").is_file()
    if store is not None:
        failures = store.failures_table()
        stats["failures"] = failures.num_rows
        stats["failure_rows"] = list(
            zip(
                failures.column("item").to_pylist(),
                failures.column("stage").to_pylist(),
                failures.column("error").to_pylist(),
                strict=True,
            )
        )
        indexed = set(store.index())
        stats["with_features"] = len(catalog_items & indexed)
        stats["store_only"] = len(indexed - set(table.column("item").to_pylist()))
    return stats


# =============================================================================================
# Provenance


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def code_commit() -> str:
    """`git rev-parse HEAD` of the code, "+ uncommitted changes" when the tree is dirty;
    "unknown" outside a git checkout."""
    sha = _git("rev-parse", "HEAD")
    if not sha:
        return "unknown"
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{sha} (+ uncommitted changes)" if dirty else sha


# =============================================================================================
# The report


@dataclass
class _Context:
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
    encoding: dict[str, Any] = field(default_factory=dict)
    extraction_runs: list[dict[str, Any]] = field(default_factory=list)
    extraction_estimate: float | None = None


def _collect(run: Path) -> _Context:
    metrics = read_metrics(run)
    config = _read_config(run)
    variant = _variant_of(run.name, config, metrics)
    runs, excluded = _same_split_runs(run, config, metrics)
    for name, m in runs.items():
        m.setdefault("variant", _variant_of(name, _read_config(run.parent / name), m))
    version, version_note = _store_version(config)
    store = extractor = None
    if version is not None:
        from featurizer.store import StoreError

        try:
            store = _open_store(version)
            extractor = store.extractor
        except StoreError as exc:
            version, version_note = None, str(exc)
    ctx = _Context(
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
        ctx.random_note = random_weights_reason(extractor)
        ctx.extraction_runs = read_extraction_runs(version)  # type: ignore[arg-type]
        ctx.extraction_estimate = _commit_interval_estimate(store)
    try:
        ctx.dataset = _dataset_stats(config, metrics, run, store)
    except (OSError, PipelineError, KeyError, ValueError, pa.ArrowException) as exc:
        ctx.dataset_error = str(exc)
    try:
        ctx.serving = serving_summary(run, queries=100)
    except (OSError, PipelineError, KeyError, ValueError, RuntimeError) as exc:
        ctx.serving_error = str(exc)
    from featurizer.store import StoreError

    try:
        ctx.encoding = _measure_item_encoding(run, version)
    except (OSError, KeyError, ValueError, RuntimeError, StoreError) as exc:
        ctx.encoding = {"skipped": f"could not measure: {exc}"}
    return ctx


def _label(ctx: _Context, name: str) -> str:
    variant = ctx.runs.get(name, {}).get("variant", name)
    return VARIANT_LABELS.get(variant, variant)


def _find_variant(ctx: _Context, variant: str) -> str | None:
    for name, m in ctx.runs.items():
        if m.get("variant") == variant:
            return name
    return None


def _test(ctx: _Context, name: str | None, group: str = "overall") -> dict[str, Any]:
    if name is None:
        return {}
    return ctx.runs.get(name, {}).get("test", {}).get(group, {})


def _summary_blocks(ctx: _Context) -> list[_Block]:
    main = _test(ctx, ctx.run.name)
    n_items = ctx.config.get("n_items") or (ctx.dataset or {}).get("catalog")
    id_name = _find_variant(ctx, "id_only")
    pop_name = _find_variant(ctx, "popularity")
    sentences = [
        f"The main run, **{VARIANT_LABELS.get(ctx.variant, ctx.variant)}** (`{ctx.run.name}`), "
        f"reaches HR@10 **{_fmt(main.get('hr@10'))}** and NDCG@10 "
        f"**{_fmt(main.get('ndcg@10'))}** on {main.get('n', 0)} test users, ranking all "
        f"{n_items} items of the catalog."
    ]
    if id_name and id_name != ctx.run.name:
        ref = _test(ctx, id_name)
        sentences.append(
            f"The ID-only SASRec baseline reaches {_fmt(ref.get('hr@10'))} / "
            f"{_fmt(ref.get('ndcg@10'))}, so the main run's HR@10 is "
            f"{_rel(main.get('hr@10'), ref.get('hr@10'))} relative to it (the paper reports "
            "+11.7% for LinkedOut over SASRec on MicroLens-100K†)."
        )
    if pop_name and pop_name != ctx.run.name:
        ref = _test(ctx, pop_name)
        sentences.append(f"Popularity ranking reaches {_fmt(ref.get('hr@10'))} HR@10.")
    cold = _test(ctx, ctx.run.name, "cold_start")
    if cold.get("n"):
        text = (
            f"On the {cold['n']} cold-start targets (items never seen in training) the main "
            f"run's HR@10 is {_fmt(cold.get('hr@10'))}"
        )
        if id_name and id_name != ctx.run.name:
            text += f" against {_fmt(_test(ctx, id_name, 'cold_start').get('hr@10'))} for ID only"
        sentences.append(text + ".")
    scored = {n: _test(ctx, n).get("hr@10") for n in ctx.runs}
    scored = {n: v for n, v in scored.items() if v is not None}
    if len(scored) > 1:
        best = max(scored, key=scored.get)  # type: ignore[arg-type]
        sentences.append(
            f"Of the {len(ctx.runs)} variants trained on this split, **{_label(ctx, best)}** "
            f"has the best HR@10 ({_fmt(scored[best])})."
        )
    if ctx.gates is not None:
        top = int(ctx.gates.mean_gate.argmax())
        sentences.append(
            f"Its layer gate gives L{ctx.gates.layers[top]} the largest mean weight "
            f"({_pct(ctx.gates.mean_gate[top])} over {len(ctx.gates.layers)} layers)."
        )
    blocks: list[_Block] = [_Para(" ".join(sentences), "lead")]
    if ctx.random_note:
        blocks.append(
            _Para(
                "These features come from a checkpoint with **random weights**: "
                f"{ctx.random_note}. The video LLM carries no world knowledge here, so the "
                "numbers describe the pipeline (extraction, store, training, evaluation), not "
                "the value of a video LLM's knowledge for recommendation.",
                "callout",
            )
        )
    if ctx.dataset and ctx.dataset.get("synthetic"):
        blocks.append(
            _Para(
                "The dataset is synthetic (`pipelines.demo_data`: `topics.csv` holds the "
                "generator's ground truth): topics have distinct visual signatures, so "
                "content predicts preference by construction.",
                "muted",
            )
        )
    cards = [
        ("HR@10", _fmt(main.get("hr@10")), f"{VARIANT_LABELS.get(ctx.variant, ctx.variant)}"),
        ("NDCG@10", _fmt(main.get("ndcg@10")), f"{main.get('n', 0)} test users"),
    ]
    if id_name and id_name != ctx.run.name:
        cards.append(
            (
                "vs ID only",
                _rel(main.get("hr@10"), _test(ctx, id_name).get("hr@10")),
                "relative HR@10",
            )
        )
    if cold.get("n"):
        cards.append(("Cold start", _fmt(cold.get("hr@10")), f"HR@10, {cold['n']} targets"))
    if ctx.serving is not None:
        cards.append(
            (
                "Ranking",
                f"{ctx.serving.p50_ms:.3g} ms",
                f"p50 per query, {ctx.serving.n_items} items",
            )
        )
    if ctx.extractor is not None:
        L, K, D = (
            int(ctx.extractor["L"]),
            int(ctx.extractor["K"]),
            int(ctx.extractor["hidden_size"]),
        )
        cards.append(("Store per video", _bytes(L * K * D * 2), f"{L}×{K}×{D} fp16"))
    blocks.append(_Cards(cards))
    return blocks


def _comparison_blocks(ctx: _Context) -> list[_Block]:
    n_items = ctx.config.get("n_items")
    blocks: list[_Block] = [
        _Para(
            f"Every variant below was trained on the same leave-one-out split and catalog "
            f"({n_items} items); the metrics are on the test split, ranking the whole catalog "
            "with each user's history masked (ties count against the target). The best value "
            "of each column is **bold**; the main run's row is highlighted. The columns marked "
            f"† are {PAPER_NOTE}: they show the shape of the paper's ablation "
            "(Tables 3–4; Table 4 lists HR@10, NDCG@10, HR@20, NDCG@20, reordered here), "
            "not numbers to match."
        )
    ]
    overall = _comparison_table(ctx.runs, "overall", paper=True, main=ctx.run.name)
    if overall is not None:
        n = _test(ctx, ctx.run.name).get("n", 0)
        overall.caption = f"{GROUP_TITLES['overall']} (n = {n})"
        overall.note = (
            "† The paper's numbers on MicroLens-100K: ID only is the paper's SASRec (Table 3); "
            "the other rows are Table 4's rows of the same name (LinkedOut full also in "
            "Table 3). Popularity and ID fusion have no counterpart there."
        )
        blocks.append(overall)
    thresholds = ctx.metrics.get("test", {}).get("popularity_thresholds") or {}
    explain = {
        "cold_start": "items with no training interaction",
        "head": f"training count > {thresholds.get('t2', 0):.3g}",
        "mid": f"{thresholds.get('t1', 0):.3g} < training count ≤ {thresholds.get('t2', 0):.3g}",
        "tail": f"1 ≤ training count ≤ {thresholds.get('t1', 0):.3g}",
    }
    grid = _Grid([])
    empty = []
    for group in GROUPS[1:]:
        table = _comparison_table(ctx.runs, group, paper=False, main=ctx.run.name)
        n = _test(ctx, ctx.run.name, group).get("n", 0)
        if table is None:
            empty.append(GROUP_SHORT[group])
            continue
        table.caption = f"{GROUP_TITLES[group]} (n = {n}; {explain[group]})"
        grid.tables.append(table)
    blocks.append(grid)
    if empty:
        blocks.append(_Para(f"No {' or '.join(empty)} test targets on this split.", "muted"))
    blocks.append(
        _Para(
            "Long-tail buckets are terciles of the target's training count over the items seen "
            "in training (recmodel.metrics); the paper reports no per-bucket numbers.",
            "muted",
        )
    )
    missing = [v for v in SWEEP_VARIANTS if _find_variant(ctx, v) is None]
    notes = []
    if missing:
        notes.append("not trained on this split: " + ", ".join(f"`{v}`" for v in missing))
    if ctx.excluded:
        notes.append("left out: " + "; ".join(f"`{n}` ({why})" for n, why in ctx.excluded.items()))
    if notes:
        blocks.append(_Para("Variants " + "; ".join(notes) + ".", "muted"))
    png = _comparison_figure(ctx.runs)
    if png is not None:
        blocks.append(
            _Figure(
                "comparison",
                png,
                "HR@10 and NDCG@10 by target group",
                "Every variant trained on this split, on all test targets, the cold-start "
                "targets and the long-tail buckets (head, mid, tail).",
            )
        )
    return blocks


def _gate_blocks(ctx: _Context) -> list[_Block]:
    g = ctx.gates
    if g is None:
        return [
            _Para(
                f"The main run's variant, `{ctx.variant}`, has no cross-layer gate "
                "(gates.parquet has no rows): train `full` or another MoE variant for this "
                "analysis."
            )
        ]
    L = len(g.layers)
    blocks: list[_Block] = [
        _Para(
            f"The gate weights π of the main run's cross-layer MoE for the {len(g.items)} items "
            f"with features ({L} tapped layers: "
            + ", ".join(f"L{layer}" for layer in g.layers)
            + "). "
            + g.dominance_sentence()
        )
    ]
    contrib = g.mean_contribution
    header = [
        "layer",
        "mean π",
        "median π",
        "std π",
        "mean contribution c",
        "items where top",
        "mean ‖h‖",
        "paper mean†",
    ]
    table = _Table(header=header, rows=[], numeric=[False] + [True] * 7, paper_cols={7})
    for j, layer in enumerate(g.layers):
        table.rows.append(
            [
                f"L{layer}",
                _pct(g.mean_gate[j]),
                f"{np.median(g.gates[:, j]):.4f}",
                f"{g.gates[:, j].std():.4f}",
                _pct(contrib[j]),
                _pct(g.argmax_share[j], 0),
                f"{g.norms[:, j].mean():.3g}",
                f"{PAPER_GATE_PERCENT[layer]:.1f}%" if layer in PAPER_GATE_PERCENT else "–",
            ]
        )
    for col, values in ((1, g.mean_gate), (4, contrib), (5, g.argmax_share)):
        top = int(np.argmax(values))
        for r in range(L):
            if math.isclose(values[r], values[top]):
                table.bold.add((r, col))
    table.caption = "Gate weights and contributions per layer"
    table.note = (
        "c = π·‖h‖ normalised per item to sum to 1 (the share of the weighted expert outputs "
        "that form z). † Paper Figure 5, MicroLens-100K (L12 not stated)."
    )
    blocks.append(table)
    if g.id_gate is not None:
        blocks.append(
            _Para(
                f"ID fusion: the learned gate puts a mean weight g = {g.id_gate.mean():.3f} on the "
                f"ID embedding (z' = g·e_id + (1−g)·z; median {np.median(g.id_gate):.3f})."
            )
        )
    blocks += [
        _Figure(
            "gate_density",
            _density_figure(g),
            "Density of the gate weight per layer",
            "Gaussian kernel density estimate (Scott's bandwidth) of π over items, one panel "
            "per tapped layer on a shared axis; red dashed: the mean, grey dotted: the uniform "
            f"weight 1/{L}. The paper's Figure 4 is the same view on MicroLens-100K.",
        ),
        _Figure(
            "gate_boxplot",
            _boxplot_figure(g),
            "Gate weights per layer, with the mean contribution in percent",
            "Boxes: quartiles; red line: median; blue dashed: mean; grey dotted: uniform "
            f"1/{L}; the annotated percentages are the mean gate weights (they sum to 100%), "
            "as in the paper's Figure 5.",
        ),
        _Figure(
            "gate_heatmap",
            _heatmap_figure(g),
            "Per-item gate weights, actual contributions and their difference",
            "Left: π. Middle: c = π·‖h‖ normalised per item to sum to 1, so it shares the "
            "left panel's colour scale. Right: c − π (red: the layer's output norm amplifies "
            "its gate weight; blue: damps it). Rows are items sorted by their top layer"
            + (
                f", {HEATMAP_MAX_ITEMS} evenly spaced of {len(g.items)}"
                if len(g.items) > HEATMAP_MAX_ITEMS
                else ""
            )
            + ". After the supplementary's Figure 1.",
        ),
    ]
    return blocks


def _efficiency_blocks(ctx: _Context) -> list[_Block]:
    rows: list[list[str]] = []
    # extraction
    runs = [r for r in ctx.extraction_runs if r.get("extracted")]
    if runs:
        seconds = sum(float(r.get("seconds", 0.0)) for r in runs)
        videos = sum(int(r["extracted"]) for r in runs)
        last = runs[-1]
        recorded = (
            f"{seconds / videos:.3g} s ({videos} videos in {len(runs)} run"
            f"{'s' * (len(runs) != 1)}, start-up included; last run "
            f"{float(last.get('seconds', 0)) / int(last['extracted']):.3g} s)"
        )
    elif ctx.extractor is not None:
        recorded = "not recorded"
        if ctx.extraction_estimate is not None:
            recorded += (
                f"; ≈ {ctx.extraction_estimate:.3g} s steady state, estimated from the commit "
                "times in index.parquet"
            )
    else:
        recorded = f"no store ({ctx.version_note})"
    rows.append(
        [
            "Feature extraction per video (offline, once)",
            recorded,
            f"{PAPER_EXTRACTION_S} s (H100, batches of 100)",
        ]
    )
    # storage
    pL, pK, pD = PAPER_LAYOUT
    paper_bytes = pL * pK * pD * 2
    if ctx.extractor is not None:
        L, K, D = (
            int(ctx.extractor["L"]),
            int(ctx.extractor["K"]),
            int(ctx.extractor["hidden_size"]),
        )
        per_video = L * K * D * 2
        n_rows = ctx.store.index_table().num_rows
        rows += [
            [
                "Store per video (L×K×D×2 bytes, fp16)",
                f"{_bytes(per_video)} ({L}×{K}×{D})",
                f"{_bytes(paper_bytes)} ({pL}×{pK}×{pD})",
            ],
            [
                "Store now",
                f"{_bytes(per_video * n_rows)} for {n_rows:,} videos",
                f"{PAPER_STORE_MICROLENS[0]} for MicroLens-100K ({PAPER_STORE_MICROLENS[1]:,})",
            ],
            ["Projected, 1M videos", _bytes(per_video * 1e6), _bytes(paper_bytes * 1e6)],
            ["Projected, 10M videos", _bytes(per_video * 1e7), _bytes(paper_bytes * 1e7)],
        ]
    else:
        rows.append(["Store per video", f"no store ({ctx.version_note})", _bytes(paper_bytes)])
    # item encoding
    enc = ctx.encoding
    if "per_item_s" in enc:
        rows += [
            [
                f"MoE item encoding per item (batch of {enc['batch']})",
                _ms(enc["per_item_s"]),
                f"{PAPER_MOE_MS} ms (MoE fusion per query)",
            ],
            ["MoE item encoding, one item alone", _ms(enc["single_s"]), "–"],
            ["Store read per item (features for encoding)", _ms(enc["read_per_item_s"]), "–"],
        ]
    else:
        rows.append(["MoE item encoding", enc.get("skipped", "not measured"), f"{PAPER_MOE_MS} ms"])
    # ranking
    if ctx.serving is not None:
        s = ctx.serving
        rows += [
            [
                f"Ranking per query (p50; 10-item history, top-10 of {s.n_items:,})",
                f"{s.p50_ms:.3g} ms",
                f"{PAPER_RANKING_MS} ms ({PAPER_QUERY_MS} ms with MoE fusion)",
            ],
            [
                "Queries per second (one thread, 1000 / p50)",
                f"{1000 / s.p50_ms:,.0f}" if s.p50_ms > 0 else "–",
                f"{PAPER_QPS} (1 / {PAPER_QUERY_MS} ms)",
            ],
            [
                "Serving vectors (item_embeddings.npy)",
                f"{_bytes(s.bytes)} ({s.n_items:,} × {s.dim} float32)",
                "–",
            ],
        ]
    else:
        rows.append(
            ["Ranking per query", f"not measured: {ctx.serving_error}", f"{PAPER_RANKING_MS} ms"]
        )
    table = _Table(
        header=["", "this run", "paper†"],
        rows=rows,
        numeric=[False, False, False],
        paper_cols={2},
        caption="Store-and-retrieve costs",
        note=(
            "† The paper's figures: Table 5 and section 4.5 (one NVIDIA H100, LLaVA-OneVision "
            "7B), supplementary Tables 7–8 (6×64×4096 fp16 = 3.15 MB per video). "
            "Projections multiply the per-video size; zarr chunks are stored uncompressed, one "
            "file per video."
        ),
    )
    threads = enc.get("threads")
    machine = f"{platform.machine()} CPU, {os.cpu_count()} logical cores" + (
        f", torch using {threads} threads" if threads else ""
    )
    return [
        _Para(
            "Store-and-retrieve splits the cost in two: the video LLM runs once per video "
            "offline; a query only runs the ranker over precomputed item vectors and one "
            f"matrix–vector product. Measured now on this machine ({machine}); the paper "
            "measured on one H100."
        ),
        table,
    ]


def _dataset_blocks(ctx: _Context) -> list[_Block]:
    if ctx.dataset is None:
        return [_Para(f"Dataset statistics unavailable: {ctx.dataset_error}", "muted")]
    d = ctx.dataset
    P = PAPER_DATASET
    rows = [
        ["Users", _num(d["users"]), P["users"]],
        ["Items in the catalog", _num(d["catalog"]), P["items"]],
        ["Interactions", _num(d["interactions"]), P["interactions"]],
        [
            "Training / validation / test samples",
            f"{d['train']:,} / {d['valid']:,} / {d['test']:,}",
            f"{P['train']} / {P['valid']} / {P['test']}",
        ],
        [
            "Interactions per user: mean (median, range)",
            f"{d['seq_mean']:.2f} ({d['seq_median']:g}, {d['seq_min']}–{d['seq_max']})",
            f"{P['seq_mean']} ({P['seq_range']})",
        ],
        [f"History length at test (≤ {d['max_history']})", f"{d['test_history_mean']:.2f}", "–"],
        ["Cold-start test targets", f"{d['cold_targets']:,} ({_pct(d['cold_share'])})", "–"],
        ["Catalog items never seen in training", _num(d["cold_items"]), "–"],
        [
            "Items with a video / without (ID-only)",
            f"{d['with_video']:,} / {d['without_video']:,}",
            "–",
        ],
    ]
    if "failures" in d:
        rows += [
            ["Items with features in the store", _num(d["with_features"]), "–"],
            ["Extraction failures", _num(d["failures"]), "–"],
            ["Store items without interactions", _num(d["store_only"]), "–"],
        ]
    table = _Table(
        header=["", "this dataset", "paper: MicroLens-100K†"],
        rows=rows,
        numeric=[False, True, True],
        paper_cols={2},
        caption=f"Dataset `{d['path']}`",
        note="† Paper Table 1.",
    )
    blocks: list[_Block] = [table]
    if d.get("failure_rows"):
        shown = d["failure_rows"][:10]
        blocks.append(
            _Table(
                header=["item", "stage", "error"],
                rows=[[str(i), str(s), str(e)] for i, s, e in shown],
                numeric=[False, False, False],
                caption="Extraction failures"
                + (
                    f" (first 10 of {len(d['failure_rows'])})"
                    if len(d["failure_rows"]) > 10
                    else ""
                ),
            )
        )
    return blocks


def _provenance_blocks(ctx: _Context) -> list[_Block]:
    cfg, train = ctx.config, ctx.config.get("train", {})
    training = ctx.metrics.get("training") or {}
    model = cfg.get("model", {})
    rows = [
        ["Run directory", f"`{ctx.run.resolve()}`"],
        ["Variant", f"`{ctx.variant}` ({VARIANT_LABELS.get(ctx.variant, ctx.variant)})"],
        ["Trained at", str(cfg.get("created_at", "unknown"))],
    ]
    if training.get("learned"):
        rows += [
            [
                "Epochs",
                f"best {training.get('best_epoch')} of {training.get('epochs_run')} run "
                f"(max {train.get('epochs')}, patience {train.get('patience')}"
                f"{', stopped early' if training.get('stopped_early') else ''})",
            ],
            [
                "Learning rate",
                f"encoder {train.get('lr_encoder')}, head {train.get('lr_head')}"
                f"{f' after {w} warmup steps' if (w := train.get('warmup_steps')) else ''}; AdamW, "
                f"weight decay {train.get('weight_decay')}, clip {train.get('grad_clip')}, "
                f"batch {train.get('batch_size')}",
            ],
            ["Loss", str(training.get("loss", "–"))],
        ]
    elif training:
        rows.append(["Training", "nothing learned (ranks by training counts)"])
    rows += [
        ["Seed", str(train.get("seed", "unknown"))],
        [
            "Model",
            f"d_model {model.get('d_model')}, {model.get('n_blocks')} ranker blocks, "
            f"history ≤ {model.get('max_history')}",
        ],
    ]
    e = ctx.extractor
    if e is not None:
        rows += [
            ["Extractor fingerprint", f"`{e.get('fingerprint')}`"],
            [
                "Extractor model",
                f"`{e.get('model')}` @ {e.get('revision')}"
                + (" — random weights" if ctx.random_note else ""),
            ],
            [
                "Extraction",
                f"layers {e.get('layers')}, K={e.get('K')} tokens ({e.get('G')} new), "
                f"{e.get('frames')} frames at {e.get('resolution')}px, merge {e.get('merge')}, "
                f"{e.get('torch_dtype')}",
            ],
            ["Prompt", "`" + str(e.get("prompt_template", "")).replace("\n", " ⏎ ") + "`"],
            ["Store version", f"`{ctx.version}` (created {e.get('created_at')})"],
        ]
    else:
        rows.append(["Feature store", ctx.version_note])
    rows += [
        ["Dataset", f"`{cfg.get('dataset', 'unknown')}`"],
        ["Code commit", code_commit()],
        [
            "Software",
            f"Python {platform.python_version()}, numpy {np.__version__}, torch {_torch_version()}",
        ],
        ["Report written", ctx.written_at],
    ]
    return [_Table(header=["", ""], rows=rows, numeric=[False, False], kv=True)]


def _torch_version() -> str:
    torch = sys.modules.get("torch")
    return getattr(torch, "__version__", "not loaded")


def _build(ctx: _Context) -> tuple[list[_Block], list[_Figure]]:
    builders = {
        "summary": _summary_blocks,
        "comparison": _comparison_blocks,
        "gates": _gate_blocks,
        "efficiency": _efficiency_blocks,
        "dataset": _dataset_blocks,
        "provenance": _provenance_blocks,
    }
    blocks: list[_Block] = []
    for anchor, title in SECTIONS:
        blocks.append(_Heading(title, anchor))
        blocks += builders[anchor](ctx)
    figures = [b for b in blocks if isinstance(b, _Figure)]
    for i, figure in enumerate(figures, start=1):
        figure.number = i
    return blocks, figures


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_report(run: Path) -> ReportPaths:
    """report.md, report.html and figures/*.png for `run`, comparing it with the sibling runs
    trained on the same split (the sweep's out directory)."""
    run = Path(run)
    if not run.is_dir():
        raise PipelineError(f"{run} is not a run directory")
    ctx = _collect(run)
    blocks, figures = _build(ctx)

    fig_dir = run / FIGURES_DIR
    fig_dir.mkdir(exist_ok=True)
    for figure in figures:
        _atomic_write(fig_dir / f"{figure.name}.png", figure.png)
    for name in FIGURE_NAMES:  # figures of an earlier report this one has not drawn
        if name not in {f.name for f in figures}:
            (fig_dir / f"{name}.png").unlink(missing_ok=True)

    dataset_name = Path(ctx.config.get("dataset", "?")).name
    if ctx.config.get("dataset"):
        dataset_name = "/".join(Path(ctx.config["dataset"]).parts[-2:])
    meta = [f"variant {VARIANT_LABELS.get(ctx.variant, ctx.variant)}"]
    meta.append(f"dataset `{dataset_name}`")
    if ctx.dataset:
        meta.append(f"{ctx.dataset['users']:,} users · {ctx.dataset['catalog']:,} items")
    if ctx.extractor:
        meta.append(f"store `{ctx.extractor.get('fingerprint')}`")
    meta.append(f"written {ctx.written_at}")
    title = f"LinkedOut evaluation report: {run.name}"
    markdown = _render_md(title, " · ".join(meta), blocks)
    md_path = run / "report.md"
    _atomic_write(md_path, markdown.encode())
    heading = f"Run `{run.name}` on `{dataset_name}`"
    footer = (
        f"Written by `pipelines/report.py` at {ctx.written_at} from the files of "
        f"`{run.resolve()}`. † marks the paper's figures (MicroLens-100K), measured on other "
        "data."
    )
    html_path = run / "report.html"
    _atomic_write(html_path, _render_html(title, heading, meta, blocks, footer).encode())

    table = _comparison_table(ctx.runs, "overall", paper=True, main=run.name)
    figures_md = {
        f.name: f"![{f.title}](data:image/png;base64,{base64.b64encode(f.png).decode()})\n\n"
        f"*Figure {f.number}. {f.title}.* {f.caption}"
        for f in figures
    }
    return ReportPaths(
        html=html_path,
        markdown=md_path,
        table_markdown=_table_md(table) if table else "(no test targets)",
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
    if "full" in variants:
        return "full"
    learned = [v for v in variants if v != "popularity"]
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
    model_overrides: dict[str, Any] | None = None,
    train_overrides: dict[str, Any] | None = None,
) -> ReportPaths:
    """Train `variants` (default: all of SWEEP_VARIANTS) on the same split into out/<variant>/,
    then write the report of the main run (`main_variant`; default `full` when swept).
    A finished run is only re-exported unless `fresh`."""
    from recmodel.config import check_variant

    variants = list(dict.fromkeys(variants or SWEEP_VARIANTS))
    if not variants:
        raise PipelineError("no variants to sweep")
    for v in variants:
        try:
            check_variant(v)
        except ValueError as exc:
            raise PipelineError(str(exc)) from None
    main = _pick_main(variants, main_variant)
    trained = train_sweep(
        dataset,
        store,
        out,
        variants,
        epochs=epochs,
        model_overrides=model_overrides,
        train_overrides=train_overrides,
        progress=progress,
        fresh=fresh,
    )
    if main not in trained:
        raise PipelineError(f"the main variant {main} was not trained (it needs a feature store)")
    return write_report(Path(out) / main)


def build_evaluation_report(
    dataset: Path, store: Path, runs: Path, main_variant: str = "full", epochs: int | None = None
) -> ReportPaths:
    """Train every other variant of the sweep on the same split, then write the main run's report."""
    others = [v for v in SWEEP_VARIANTS if v != main_variant]
    train_sweep(dataset, store, runs, others, epochs=epochs, progress=False, fresh=True)
    return write_report(Path(runs) / main_variant)
