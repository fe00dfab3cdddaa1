"""The report's document model (headings, paragraphs, tables, figures, cards) and its two
renderings: Markdown with linked figures, and self-contained HTML with inline CSS."""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from typing import Any

from pipelines.report.layout import (
    FIGURES_DIR,
    GROUP_SHORT,
    GROUPS,
    METRIC_LABELS,
    METRICS,
    PAPER_METRICS,
    SECTIONS,
    variant_label,
)

# =============================================================================================
# Markdown tables (public helpers) and the document model behind both renderings


def fmt(value: Any, digits: int = 4) -> str:
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
            values = " | ".join(fmt(m.get(k)) if m["n"] else "–" for k in METRICS)
            lines.append(f"| {group} | {m['n']} | {values} |")
    return "\n".join(lines)


def comparison_markdown(
    runs: dict[str, dict[str, Any]], group: str = "overall", paper: bool = False
) -> str:
    """Variants x metrics on the test split for one target group, the best of each column bold;
    with `paper`, the paper's MicroLens-100K figures in extra columns marked as the paper's."""
    table = comparison_table(runs, group, paper)
    if table is None:
        return f"(no {GROUP_SHORT.get(group, group)} test targets)"
    return table_md(table)


@dataclass
class Heading:
    text: str
    anchor: str


@dataclass
class Para:
    text: str  # inline markup: **bold**, `code`
    kind: str = ""  # "", "lead", "callout", "muted"


@dataclass
class TableBlock:
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
class Grid:
    tables: list[TableBlock]


@dataclass
class FigureBlock:
    name: str
    png: bytes
    title: str
    caption: str
    number: int = 0


@dataclass
class Cards:
    items: list[tuple[str, str, str]]  # label, value, detail


Block = Heading | Para | TableBlock | FigureBlock | Cards | Grid


def comparison_table(
    runs: dict[str, dict[str, Any]], group: str, paper: bool, main: str | None = None
) -> TableBlock | None:
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
    table = TableBlock(header=header, rows=[], numeric=numeric, variant_col=True, wide=paper)
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
        label = variant_label(variant)
        cells = [f"{label} `{name}`"]
        for c, k in enumerate(METRICS, start=1):
            value = m.get(k)
            cells.append(fmt(value))
            if value is not None and best[k] is not None and math.isclose(value, best[k]):
                table.bold.add((r, c))
        if paper:
            if variant in PAPER_METRICS:
                row_name, source, values = PAPER_METRICS[variant]
                cells += [fmt(values[k]) for k in METRICS] + [f"{source}: {row_name}"]
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


def table_md(table: TableBlock) -> str:
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


def render_md(title: str, meta: str, blocks: list[Block]) -> str:
    out = [f"# {title}", "", meta, ""]
    for block in blocks:
        if isinstance(block, Heading):
            out += [f"## {block.text}", ""]
        elif isinstance(block, Para):
            text = f"> **Note.** {block.text}" if block.kind == "callout" else block.text
            out += [text, ""]
        elif isinstance(block, Cards):
            out += [f"- **{label}:** {value} ({detail})" for label, value, detail in block.items]
            out.append("")
        elif isinstance(block, (TableBlock, Grid)):
            for table in block.tables if isinstance(block, Grid) else [block]:
                if table.caption:
                    out += [f"**{table.caption}**", ""]
                out += [table_md(table), ""]
                if table.note:
                    out += [f"*{table.note}*", ""]
        elif isinstance(block, FigureBlock):
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


def _table_html(table: TableBlock) -> str:
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


def _figure_html(figure: FigureBlock) -> str:
    data = base64.b64encode(figure.png).decode()
    return (
        f'<figure id="fig-{figure.name}"><img src="data:image/png;base64,{data}" '
        f'alt="{html.escape(figure.title)}"><figcaption><b>Figure {figure.number}. '
        f"{html.escape(figure.title)}.</b> {_inline_html(figure.caption)}</figcaption></figure>"
    )


def render_html(title: str, heading: str, meta: list[str], blocks: list[Block], footer: str) -> str:
    toc = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in SECTIONS)
    body: list[str] = []
    open_section = False
    number = 0
    for block in blocks:
        if isinstance(block, Heading):
            if open_section:
                body.append("</section>")
            number += 1
            body.append(
                f'<section id="{block.anchor}"><h2><span class="num">{number}</span>'
                f"{html.escape(block.text)}</h2>"
            )
            open_section = True
        elif isinstance(block, Para):
            cls = f' class="{block.kind}"' if block.kind else ""
            text = _inline_html(block.text)
            if block.kind == "callout":
                text = f"<strong>Note.</strong> {text}"
            body.append(f"<p{cls}>{text}</p>")
        elif isinstance(block, Cards):
            cards = "".join(
                f'<div class="card"><div class="label">{html.escape(label)}</div>'
                f'<div class="value">{html.escape(value)}</div>'
                f'<div class="detail">{_inline_html(detail)}</div></div>'
                for label, value, detail in block.items
            )
            body.append(f'<div class="cards">{cards}</div>')
        elif isinstance(block, TableBlock):
            body.append(_table_html(block))
        elif isinstance(block, Grid):
            body.append(
                '<div class="grid2">' + "".join(_table_html(t) for t in block.tables) + "</div>"
            )
        elif isinstance(block, FigureBlock):
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


def fmt_num(n: int | float) -> str:
    return f"{n:,}" if isinstance(n, int) else f"{n:,.2f}"


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def rel(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{100 * (a - b) / b:+.1f}%".replace("-", "−")


def fmt_bytes(n: float) -> str:
    """Decimal units with three significant digits, as the paper writes them (3.15 MB)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.3g} PB"


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g} ms" if ms >= 0.01 else f"{ms * 1e3:.3g} µs"
