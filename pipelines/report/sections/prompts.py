"""The Prompt mixture section: how the prompt-bank variant weighs the store's prompts, shown the
way the layer gate is (report/mixture.py reads the weights)."""

from __future__ import annotations

import math

import numpy as np

from pipelines.report.document import Block, FigureBlock, Para, TableBlock, pct
from pipelines.report.figures import weight_boxplot
from pipelines.report.mixture import PromptMixture
from recmodel.variants import bank_variant


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
    return weight_boxplot(
        mixture.weights, [f"prompt {p}" for p in range(len(mixture.prompts))], "prompt weight α"
    )
