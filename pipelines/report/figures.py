"""The report's figures as PNG bytes (matplotlib, headless)."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from pipelines.report.document import pct
from pipelines.report.gates import GateAnalysis, gaussian_kde, scott_bandwidth
from pipelines.report.layout import (
    GROUP_SHORT,
    GROUPS,
    HEATMAP_MAX_ITEMS,
    METRIC_LABELS,
    variant_color,
    variant_label,
)

_BLUE, _RED, _GREY = "#1f5fbf", "#c8372d", "#8a94a6"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 9.5,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 10,
            "axes.titleweight": "bold",
            "axes.edgecolor": "#9aa3b2",
            "axes.labelcolor": "#3a4454",
            "xtick.color": "#3a4454",
            "ytick.color": "#3a4454",
            "figure.dpi": 110,
        }
    )
    return plt


def _png(fig: Any) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return buf.getvalue()


def comparison_figure(runs: dict[str, dict[str, Any]]) -> bytes | None:
    groups = [
        g for g in GROUPS if any(m.get("test", {}).get(g, {}).get("n") for m in runs.values())
    ]
    if not groups or not runs:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5), sharey=False)
    names = list(runs)
    width = 0.8 / len(names)
    x = np.arange(len(groups))
    for ax, metric in zip(axes, ("hr@10", "ndcg@10"), strict=True):
        for i, name in enumerate(names):
            test = runs[name].get("test", {})
            values = [test.get(g, {}).get(metric) or 0.0 for g in groups]
            variant = runs[name].get("variant", name)
            ax.bar(
                x - 0.4 + width * (i + 0.5),
                values,
                width * 0.92,
                label=variant_label(variant),
                color=variant_color(variant),
            )
        ax.set_xticks(x, [GROUP_SHORT[g] for g in groups])
        ax.set_title(f"{METRIC_LABELS[metric]} on the test split")
        ax.grid(axis="y", color="#e6e9ef", linewidth=0.8)
        ax.set_axisbelow(True)
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8.5)
    fig.tight_layout()
    return _png(fig)


def density_figure(g: GateAnalysis) -> bytes:
    plt = _pyplot()
    L = len(g.layers)
    cols = min(L, 3)
    rows = math.ceil(L / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(10.5, 2.5 * rows + 0.3), squeeze=False)
    bandwidths = [scott_bandwidth(g.gates[:, j]) for j in range(L)]
    pad = 3 * max([b for b in bandwidths if b > 0] or [1e-3])
    lo = max(0.0, float(g.gates.min()) - pad)
    hi = min(1.0, float(g.gates.max()) + pad)
    grid = np.linspace(lo, hi, 256)
    for j, layer in enumerate(g.layers):
        ax = axes[j // cols][j % cols]
        values = g.gates[:, j]
        density = gaussian_kde(values, grid)
        ax.fill_between(grid, density, color=_BLUE, alpha=0.25, linewidth=0)
        ax.plot(grid, density, color=_BLUE, linewidth=1.4)
        ax.axvline(values.mean(), color=_RED, linestyle="--", linewidth=1.0)
        ax.axvline(1.0 / L, color=_GREY, linestyle=":", linewidth=1.0)
        ax.set_title(f"L{layer} · mean {pct(values.mean())}")
        ax.set_yticks([])
        ax.set_xlim(lo, hi)
    for j in range(L, rows * cols):
        axes[j // cols][j % cols].axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("gate weight π")
    fig.tight_layout()
    return _png(fig)


def boxplot_figure(g: GateAnalysis) -> bytes:
    return weight_boxplot(g.gates, [f"L{layer}" for layer in g.layers], "gate weight π")


def weight_boxplot(weights: np.ndarray, labels: list[str], ylabel: str) -> bytes:
    """Box plots of (F, n) mixture weights (each row sums to 1), one per column, with each
    column's mean annotated in percent and the uniform weight 1/n dotted."""
    plt = _pyplot()
    n = weights.shape[1]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.75 * n), 3.8))
    ax.boxplot(
        [weights[:, j] for j in range(n)],
        tick_labels=labels,
        showmeans=True,
        meanline=True,
        widths=0.55,
        patch_artist=True,
        boxprops={"facecolor": "#e8effa", "edgecolor": "#5b7bb0"},
        medianprops={"color": _RED, "linewidth": 1.6},
        meanprops={"color": _BLUE, "linestyle": "--", "linewidth": 1.4},
        whiskerprops={"color": "#5b7bb0"},
        capprops={"color": "#5b7bb0"},
        flierprops={"marker": ".", "markersize": 3, "markeredgecolor": "#8a94a6"},
    )
    ax.axhline(1.0 / n, color=_GREY, linestyle=":", linewidth=1.0)
    top, bottom = float(weights.max()), float(weights.min())
    span = max(top - bottom, 1e-6)
    ax.set_ylim(bottom - 0.08 * span, top + 0.22 * span)
    for j, mean in enumerate(weights.mean(axis=0)):
        ax.annotate(
            pct(mean),
            (j + 1, top + 0.08 * span),
            ha="center",
            fontsize=10,
            fontweight="bold",
            color="#1c2330",
        )
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", color="#e6e9ef", linewidth=0.8)
    ax.set_axisbelow(True)
    fig.tight_layout()
    return _png(fig)


def _heatmap_rows(g: GateAnalysis) -> np.ndarray:
    """Items sorted by their top layer, then by that layer's weight; at most
    HEATMAP_MAX_ITEMS, evenly spaced over the sorted list."""
    top = g.gates.argmax(axis=1)
    order = np.lexsort((-g.gates[np.arange(len(top)), top], top))
    if len(order) > HEATMAP_MAX_ITEMS:
        order = order[np.linspace(0, len(order) - 1, HEATMAP_MAX_ITEMS).round().astype(int)]
    return order


def heatmap_figure(g: GateAnalysis) -> bytes:
    plt = _pyplot()
    rows = _heatmap_rows(g)
    gates, contrib = g.gates[rows], g.contributions[rows]
    diff = contrib - gates
    height = min(9.0, 2.0 + 0.12 * len(rows))
    fig, axes = plt.subplots(1, 3, figsize=(12, height))
    vmin = float(min(gates.min(), contrib.min()))
    vmax = float(max(gates.max(), contrib.max()))
    dmax = float(np.abs(diff).max()) or 1e-6
    panels = (
        ("Gate weights π", gates, "viridis", vmin, vmax),
        ("Actual contributions c (π·‖h‖, per item)", contrib, "viridis", vmin, vmax),
        ("Difference c − π", diff, "RdBu_r", -dmax, dmax),
    )
    labels = [f"L{layer}" for layer in g.layers]
    for ax, (title, data, cmap, lo, hi) in zip(axes, panels, strict=True):
        im = ax.imshow(data, aspect="auto", cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(title)
        ax.set_xticks(range(len(labels)), labels)
        if len(rows) <= 40:
            ax.set_yticks(range(len(rows)), [g.items[i] for i in rows], fontsize=7)
        else:
            ax.set_yticks([])
        ax.spines[:].set_visible(False)
        fig.colorbar(im, ax=ax, fraction=0.05, pad=0.03)
    axes[0].set_ylabel("item")
    fig.tight_layout()
    return _png(fig)


def search_figure(epochs: Any, chosen: str | None) -> bytes | None:
    """Each trial's validation NDCG@10 over the epochs it trained (its budget: the scheduler
    stops the weaker ones early); the chosen trial in blue, the others grey."""
    if epochs is None or len(epochs) == 0:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    for trial, rows in epochs.groupby("trial", sort=True):
        best = trial == chosen
        ax.plot(
            rows["epoch"],
            rows["valid_ndcg@10"],
            color=_BLUE if best else _GREY,
            linewidth=2.0 if best else 0.9,
            alpha=1.0 if best else 0.7,
            zorder=3 if best else 2,
            label=f"chosen: {trial}" if best else None,
        )
        ax.plot(rows["epoch"].iloc[-1], rows["valid_ndcg@10"].iloc[-1], "o", ms=2.5,
                color=_BLUE if best else _GREY)  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NDCG@10")
    ax.set_title("Every trial's validation NDCG@10 over its budget")
    ax.grid(color="#e6e9ef", linewidth=0.8)
    ax.set_axisbelow(True)
    if chosen is not None:
        ax.legend(loc="lower right", frameon=False, fontsize=8.5)
    fig.tight_layout()
    return _png(fig)
