"""The report's sections, one module each, in the order of layout.SECTIONS: each turns the
ReportContext into document blocks (document.py); figures are numbered in reading order."""

from __future__ import annotations

from pipelines.report.context import ReportContext
from pipelines.report.document import Block, FigureBlock, Heading
from pipelines.report.layout import SECTIONS
from pipelines.report.sections.comparison import comparison_blocks
from pipelines.report.sections.dataset import dataset_blocks
from pipelines.report.sections.efficiency import efficiency_blocks
from pipelines.report.sections.gates import gate_blocks
from pipelines.report.sections.prompts import prompt_mixture_blocks
from pipelines.report.sections.provenance import provenance_blocks
from pipelines.report.sections.search import search_blocks
from pipelines.report.sections.summary import summary_blocks


def build_sections(ctx: ReportContext) -> tuple[list[Block], list[FigureBlock]]:
    builders = {
        "summary": summary_blocks,
        "comparison": comparison_blocks,
        "gates": gate_blocks,
        "prompts": lambda ctx: prompt_mixture_blocks(ctx.prompts, ctx.prompts_note),
        "efficiency": efficiency_blocks,
        "dataset": dataset_blocks,
        "provenance": lambda ctx: provenance_blocks(ctx) + search_blocks(ctx),
    }
    blocks: list[Block] = []
    for anchor, title in SECTIONS:
        blocks.append(Heading(title, anchor))
        blocks += builders[anchor](ctx)
    figures = [b for b in blocks if isinstance(b, FigureBlock)]
    for i, figure in enumerate(figures, start=1):
        figure.number = i
    return blocks, figures
