"""The report as one self-contained HTML page: the stylesheet (report.css) inline, figures
embedded as base64 PNG, the variant's name in a tooltip of its label."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from pipelines.report.document import Block, Cards, FigureBlock, Grid, Heading, Para, TableBlock
from pipelines.report.layout import SECTIONS

CSS = (Path(__file__).parent / "report.css").read_text(encoding="utf-8")


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
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        '<header class="top"><div class="wrap"><div class="eyebrow">LinkedOut · evaluation '
        f'report</div><h1>{_inline_html(heading)}</h1><div class="meta">{meta_html}</div>'
        f'<nav class="toc">{toc}</nav></div></header><main class="wrap">{"".join(body)}</main>'
        f'<footer class="wrap">{_inline_html(footer)}</footer></body></html>\n'
    )
