"""The report's "Prompt mixture" section: how the prompt-bank variant weighs the prompts of the store's
prompt bank, shown the way the layer gate is (mean weight per prompt, the per-item distribution),
read from that run's gates.parquet (`prompt_<p>` columns) and config.json (the prompts)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.report.gates import read_gates_table
from pipelines.report.render import Block, FigureBlock, Para, TableBlock, pct
from pipelines.report.runs import read_config
from recmodel.variants import bank_variant


@dataclass
class PromptMixture:
    """alpha of every item with features, (F, P), and the prompts they weigh."""

    run: Path
    prompts: list[str]
    items: list[str]
    weights: np.ndarray  # (F, P) alpha, each row sums to 1

    @property
    def mean(self) -> np.ndarray:
        return self.weights.mean(axis=0)

    @property
    def argmax_share(self) -> np.ndarray:
        counts = np.bincount(self.weights.argmax(axis=1), minlength=len(self.prompts))
        return counts / max(len(self.items), 1)


def read_prompt_mixture(run: Path) -> PromptMixture | None:
    """The prompt mixture of a prompt-bank run; None without one (no prompt columns)."""
    table = read_gates_table(run)
    if table is None:
        return None
    columns = sorted(
        (c for c in table.column_names if re.fullmatch(r"prompt_\d+", c)),
        key=lambda c: int(c.split("_")[1]),
    )
    if not columns or table.num_rows == 0:
        return None
    prompts = [str(p) for p in read_config(Path(run)).get("store", {}).get("prompts", [])]
    if len(prompts) != len(columns):
        prompts = [f"prompt {p}" for p in range(len(columns))]
    weights = np.stack([table.column(c).to_numpy() for c in columns], axis=1)
    return PromptMixture(Path(run), prompts, table.column("item").to_pylist(), weights)


def prompt_mixture_blocks(mixture: PromptMixture | None, note: str = "") -> list[Block]:
    bank = bank_variant()
    name = bank.name if bank else "prompt-bank"
    if mixture is None:
        return [
            Para(
                note
                or (
                    f"No `{name}` run beside this one: extract with a preset that names "
                    "a prompt bank (`prompts`; the demo's has three) and train that variant to "
                    "see how it weighs the prompts."
                ),
                "muted",
            )
        ]
    P, mean = len(mixture.prompts), mixture.mean
    top = int(np.argmax(mean))
    blocks: list[Block] = [
        Para(
            f"`{name}` reads every video under the {P} prompts of the store's prompt "
            "bank; its prompt gate mixes them per item (α, a softmax over prompts) before the "
            f"layer gate. Over the {len(mixture.items)} items with features, prompt {top} gets "
            f"the largest mean weight ({pct(mean[top])}; uniform: {pct(1 / P)}), and is the "
            f"top prompt of {pct(mixture.argmax_share[top], 0)} of the items."
        )
    ]
    table = TableBlock(
        header=["prompt", "template", "mean α", "median α", "std α", "items where top"],
        rows=[],
        numeric=[False, False, True, True, True, True],
        caption="Prompt mixture: weight per prompt",
        note=(
            "α is the prompt gate's weight of a prompt for one item (the weights of an item "
            "sum to 1). The template's {title} is each video's title."
        ),
    )
    for p, prompt in enumerate(mixture.prompts):
        w = mixture.weights[:, p]
        table.rows.append(
            [
                f"{p}",
                "`" + " ".join(prompt.replace("<video>", "").split()) + "`",
                pct(mean[p]),
                f"{np.median(w):.4f}",
                f"{w.std():.4f}",
                pct(mixture.argmax_share[p], 0),
            ]
        )
    for col, values in ((2, mean), (5, mixture.argmax_share)):
        best = int(np.argmax(values))
        table.bold |= {(r, col) for r in range(P) if math.isclose(values[r], values[best])}
    blocks.append(table)
    blocks.append(
        FigureBlock(
            "prompt_mixture",
            prompt_mixture_figure(mixture),
            "Prompt mixture weights per item",
            "Distribution over items of each prompt's weight α; boxes: quartiles, red line: "
            f"median, blue dashed: mean, grey dotted: uniform 1/{P}; annotated: the mean "
            "weights (they sum to 100%).",
        )
    )
    return blocks


def prompt_mixture_figure(mixture: PromptMixture) -> bytes:
    from pipelines.report.figures import weight_boxplot

    return weight_boxplot(
        mixture.weights, [f"prompt {p}" for p in range(len(mixture.prompts))], "prompt weight α"
    )
