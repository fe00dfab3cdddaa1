"""The report's document model: headings, paragraphs, tables, figures and cards, which the
sections build and the Markdown and HTML renderings (markdown.py, html.py) turn into text; the
comparison table every rendering shares; and how numbers are written."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pipelines.report.layout import METRIC_LABELS, METRICS, PAPER_METRICS, variant_label


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


def fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


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
