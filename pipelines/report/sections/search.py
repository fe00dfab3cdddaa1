"""The Provenance section's hyperparameter search, for a run trained with a search's best.yaml:
every trial's validation NDCG@10 over its budget, and the trials ranked by it."""

from __future__ import annotations

from pipelines.report.context import ReportContext
from pipelines.report.document import Block, FigureBlock, Para, TableBlock, fmt
from pipelines.report.figures import search_figure
from pipelines.report.search import VALID

MOST_ROWS = 20  # the table's best trials; the rest are in trials.csv


def search_blocks(ctx: ReportContext) -> list[Block]:
    if ctx.search_error:
        return [Para(f"The settings came from a search that cannot be read: {ctx.search_error}")]
    search = ctx.search
    if search is None:
        return []
    trials = search.trials
    params = [name for name in search.space if name in trials.columns]
    blocks: list[Block] = [
        Para(
            f"These settings were chosen by `linkedout tune` in `{search.directory}`: "
            f"{len(trials)} trials, the best validation NDCG@10 chosen (the test split is "
            "reported, never used to choose).",
        )
    ]
    png = search_figure(search.epochs, search.chosen)
    if png is not None:
        blocks.append(
            FigureBlock(
                "search",
                png,
                "Hyperparameter search",
                "Validation NDCG@10 of every trial per epoch; a line ends where the trial "
                "finished or the ASHA scheduler stopped it. The chosen trial is in blue.",
            )
        )
    shown = trials.sort_values(VALID, ascending=False, na_position="last").head(MOST_ROWS)
    header = ["trial", "status", *params, "epochs", "valid NDCG@10", "test NDCG@10"]
    rows = []
    chosen_row = None
    for i, (_, row) in enumerate(shown.iterrows()):
        if row["trial"] == search.chosen:
            chosen_row = i
        rows.append(
            [f"`{row['trial']}`", str(row["status"])]
            + [_value(row[p]) for p in params]
            + [str(row["epochs"]), fmt(row[VALID]), fmt(row["test_ndcg@10"])]
        )
    table = TableBlock(
        header=header,
        rows=rows,
        numeric=[False, False] + [True] * (len(params) + 3),
        caption="Trials of the search, best validation NDCG@10 first",
        note=f"Every trial, with failures' errors: `{search.directory / 'trials.csv'}`.",
    )
    if chosen_row is not None:
        table.row_class[chosen_row] = "main"
    blocks.append(table)
    return blocks


def _value(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
