"""A prompt-bank run's prompt mixture: alpha per item and prompt, read from its gates.parquet
(`prompt_<p>` columns) and config.json (the prompts)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.report.gates import top_share
from pipelines.serving.runfiles import read_config, read_gates_table


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
        return top_share(self.weights)


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
