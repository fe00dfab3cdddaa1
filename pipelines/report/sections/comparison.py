"""The Comparison section: every variant trained on the run's split, on all test targets, the
cold-start targets and the long-tail buckets, beside the paper's ablation."""

from __future__ import annotations

from pipelines.report.context import ReportContext
from pipelines.report.document import Block, FigureBlock, Grid, Para, comparison_table
from pipelines.report.figures import comparison_figure
from pipelines.report.layout import GROUP_SHORT, GROUP_TITLES, GROUPS, PAPER_NOTE
from recmodel.variants import all_variants


def comparison_blocks(ctx: ReportContext) -> list[Block]:
    n_items = ctx.config.get("n_items")
    blocks: list[Block] = [
        Para(
            f"Every variant below was trained on the same leave-one-out split and catalog "
            f"({n_items} items); the metrics are on the test split, ranking the whole catalog "
            "with each user's history masked (ties count against the target). The best value "
            "of each column is **bold**; the main run's row is highlighted. The columns marked "
            f"† are {PAPER_NOTE}: they show the shape of the paper's ablation "
            "(Tables 3–4; Table 4 lists HR@10, NDCG@10, HR@20, NDCG@20, reordered here), "
            "not numbers to match."
        )
    ]
    overall = comparison_table(ctx.runs, "overall", paper=True, main=ctx.run.name)
    if overall is not None:
        n = ctx.test(ctx.run.name).get("n", 0)
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
    grid = Grid([])
    empty = []
    for group in GROUPS[1:]:
        table = comparison_table(ctx.runs, group, paper=False, main=ctx.run.name)
        n = ctx.test(ctx.run.name, group).get("n", 0)
        if table is None:
            empty.append(GROUP_SHORT[group])
            continue
        table.caption = f"{GROUP_TITLES[group]} (n = {n}; {explain[group]})"
        grid.tables.append(table)
    blocks.append(grid)
    if empty:
        blocks.append(Para(f"No {' or '.join(empty)} test targets on this split.", "muted"))
    blocks.append(
        Para(
            "Long-tail buckets are terciles of the target's training count over the items seen "
            "in training (recmodel.metrics); the paper reports no per-bucket numbers.",
            "muted",
        )
    )
    # a prompt-bank variant needs a store with a prompt bank: not missing where there is none
    missing = [
        v.name
        for v in all_variants()
        if ctx.find_variant(v.name) is None and (not v.prompt_bank or ctx.bank_store)
    ]
    notes = []
    if missing:
        notes.append("not trained on this split: " + ", ".join(f"`{v}`" for v in missing))
    if ctx.excluded:
        notes.append("left out: " + "; ".join(f"`{n}` ({why})" for n, why in ctx.excluded.items()))
    if notes:
        blocks.append(Para("Variants " + "; ".join(notes) + ".", "muted"))
    png = comparison_figure(ctx.runs)
    if png is not None:
        blocks.append(
            FigureBlock(
                "comparison",
                png,
                "HR@10 and NDCG@10 by target group",
                "Every variant trained on this split, on all test targets, the cold-start "
                "targets and the long-tail buckets (head, mid, tail).",
            )
        )
    return blocks
