"""The report as Markdown: figures linked as files under figures/, tables as pipe tables."""

from __future__ import annotations

from typing import Any

from pipelines.report.document import (
    Block,
    Cards,
    FigureBlock,
    Grid,
    Heading,
    Para,
    TableBlock,
    comparison_table,
    fmt,
)
from pipelines.report.layout import GROUP_SHORT, GROUPS, METRIC_LABELS, METRICS
from pipelines.serving.runfiles import FIGURES_DIR


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
