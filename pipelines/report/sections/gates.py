"""The Layer-gate analysis: the main run's gate weights pi and contributions per tapped layer
(report/gates.py computes them), with their density, box plot and per-item heat map."""

from __future__ import annotations

import math

import numpy as np

from pipelines.report.context import ReportContext
from pipelines.report.document import Block, FigureBlock, Para, TableBlock, pct
from pipelines.report.figures import boxplot_figure, density_figure, heatmap_figure
from pipelines.report.layout import HEATMAP_MAX_ITEMS, PAPER_GATE_PERCENT


def gate_blocks(ctx: ReportContext) -> list[Block]:
    g = ctx.gates
    if g is None:
        return [
            Para(
                f"The main run's variant, `{ctx.variant}`, has no cross-layer gate "
                "(gates.parquet has no rows): train `full` or another MoE variant for this "
                "analysis."
            )
        ]
    L = len(g.layers)
    blocks: list[Block] = [
        Para(
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
    table = TableBlock(header=header, rows=[], numeric=[False] + [True] * 7, paper_cols={7})
    for j, layer in enumerate(g.layers):
        table.rows.append(
            [
                f"L{layer}",
                pct(g.mean_gate[j]),
                f"{np.median(g.gates[:, j]):.4f}",
                f"{g.gates[:, j].std():.4f}",
                pct(contrib[j]),
                pct(g.argmax_share[j], 0),
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
            Para(
                f"ID fusion: the learned gate puts a mean weight g = {g.id_gate.mean():.3f} on the "
                f"ID embedding (z' = g·e_id + (1−g)·z; median {np.median(g.id_gate):.3f})."
            )
        )
    blocks += [
        FigureBlock(
            "gate_density",
            density_figure(g),
            "Density of the gate weight per layer",
            "Gaussian kernel density estimate (Scott's bandwidth) of π over items, one panel "
            "per tapped layer on a shared axis; red dashed: the mean, grey dotted: the uniform "
            f"weight 1/{L}. The paper's Figure 4 is the same view on MicroLens-100K.",
        ),
        FigureBlock(
            "gate_boxplot",
            boxplot_figure(g),
            "Gate weights per layer, with the mean contribution in percent",
            "Boxes: quartiles; red line: median; blue dashed: mean; grey dotted: uniform "
            f"1/{L}; the annotated percentages are the mean gate weights (they sum to 100%), "
            "as in the paper's Figure 5.",
        ),
        FigureBlock(
            "gate_heatmap",
            heatmap_figure(g),
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
