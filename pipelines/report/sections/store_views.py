"""The Efficiency section's compact store views: each view's bytes per video and the main
metrics of the main variant trained on it (runs/views/<view>/), beside it on the store it came
from."""

from __future__ import annotations

from pipelines.report.context import ReportContext, StoreViewRun
from pipelines.report.document import Block, Para, TableBlock, fmt, fmt_bytes, rel
from recmodel.variants import MAIN_VARIANT

COLUMNS = (("overall", "hr@10", "HR@10"), ("overall", "ndcg@10", "NDCG@10"))
COLD = ("cold_start", "hr@10", "cold-start HR@10")


def store_view_blocks(ctx: ReportContext) -> list[Block]:
    if not ctx.views:
        return [
            Para(
                "No compact store view was trained beside the full store. `linkedout store "
                "derive STORE --int8 | --k-tokens K | --layers a,b,c` writes one without "
                "re-extraction; `full` trained on it into runs/views/<view>/ (the `store_views` "
                "asset does both for the views its resource names) is compared here.",
                "muted",
            )
        ]
    main = next((name for name, m in ctx.runs.items() if m.get("variant") == MAIN_VARIANT), None)
    base = ctx.runs[main]["test"] if main is not None else {}
    base_bytes = ctx.store.row_bytes if ctx.store is not None else None
    metrics = (*COLUMNS, COLD)
    header = ["store", "layout", "bytes per video", "× full store"]
    header += [label for _, _, label in metrics] + ["Δ HR@10", "Δ cold-start HR@10"]
    table = TableBlock(
        header=header,
        rows=[],
        numeric=[False, False, True, True] + [True] * (len(metrics) + 2),
        caption="Compact store views: bytes per video and `full` trained on each",
        note=(
            "Each view is derived from the full store version without re-extraction (`linkedout "
            "store derive`): int8 keeps one byte a value and a float16 scale per token; K "
            "merges the old tokens further and keeps the generated ones; layers keeps a subset. "
            "One training seed each: a small difference is within seed noise."
        ),
    )
    if ctx.extractor is not None:
        L, K, D = ctx.store.shape_per_item
        table.rows.append(
            [f"full store `{main or '–'}`", f"{L}×{K}×{D} float16", _bytes(base_bytes), "1.00"]
            + [fmt(base.get(g, {}).get(k)) for g, k, _ in metrics]
            + ["–", "–"]
        )
        table.row_class[0] = "main"
    for view in ctx.views:
        table.rows.append(_view_row(view, base, base_bytes))
    blocks: list[Block] = [table]
    unreadable = [v for v in ctx.views if v.note]
    if unreadable:
        blocks.append(Para("; ".join(f"view {v.name}: {v.note}" for v in unreadable), "muted"))
    return blocks


def _view_row(view: StoreViewRun, base: dict, base_bytes: int | None) -> list[str]:
    layout = "–"
    if view.shape is not None:
        L, K, D = view.shape
        layout = f"{L}×{K}×{D} {view.dtype}"
    ratio = f"{view.row_bytes / base_bytes:.2f}" if view.row_bytes and base_bytes else "–"
    cells = [f"view `{view.name}`", layout, _bytes(view.row_bytes), ratio]
    cells += [fmt(view.test.get(g, {}).get(k)) for g, k, _ in (*COLUMNS, COLD)]
    for group in ("overall", "cold_start"):
        cells.append(rel(view.test.get(group, {}).get("hr@10"), base.get(group, {}).get("hr@10")))
    return cells


def _bytes(n: int | None) -> str:
    return fmt_bytes(n) if n else "–"
