"""The Dataset section: the interactions and the store against the paper's MicroLens-100K."""

from __future__ import annotations

from pipelines.report.context import ReportContext
from pipelines.report.document import Block, Para, TableBlock, fmt_num, pct
from pipelines.report.layout import PAPER_DATASET


def dataset_blocks(ctx: ReportContext) -> list[Block]:
    if ctx.dataset is None:
        return [Para(f"Dataset statistics unavailable: {ctx.dataset_error}", "muted")]
    d = ctx.dataset
    P = PAPER_DATASET
    rows = [
        ["Users", fmt_num(d["users"]), P["users"]],
        ["Items in the catalog", fmt_num(d["catalog"]), P["items"]],
        ["Interactions", fmt_num(d["interactions"]), P["interactions"]],
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
        ["Cold-start test targets", f"{d['cold_targets']:,} ({pct(d['cold_share'])})", "–"],
        ["Catalog items never seen in training", fmt_num(d["cold_items"]), "–"],
        [
            "Items with a video / without (ID-only)",
            f"{d['with_video']:,} / {d['without_video']:,}",
            "–",
        ],
    ]
    if "failures" in d:
        rows += [
            ["Items with features in the store", fmt_num(d["with_features"]), "–"],
            ["Extraction failures", fmt_num(d["failures"]), "–"],
            ["Store items without interactions", fmt_num(d["store_only"]), "–"],
        ]
    table = TableBlock(
        header=["", "this dataset", "paper: MicroLens-100K†"],
        rows=rows,
        numeric=[False, True, True],
        paper_cols={2},
        caption=f"Dataset `{d['path']}`",
        note="† Paper Table 1.",
    )
    blocks: list[Block] = [table]
    if d.get("failure_rows"):
        shown = d["failure_rows"][:10]
        blocks.append(
            TableBlock(
                header=["item", "stage", "error"],
                rows=[[str(i), str(s), str(e)] for i, s, e in shown],
                numeric=[False, False, False],
                caption="Extraction failures"
                + (f" (first 10 of {d['failures']})" if d["failures"] > 10 else ""),
            )
        )
    return blocks
