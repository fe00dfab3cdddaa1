"""What a report shows: the metrics, target groups, variants and sections, and the paper's
figures it sets beside ours (always marked as the paper's, measured on other data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from recmodel.variants import get_variant, variant_names

METRICS = ("hr@10", "hr@20", "ndcg@10", "ndcg@20")
METRIC_LABELS = {"hr@10": "HR@10", "hr@20": "HR@20", "ndcg@10": "NDCG@10", "ndcg@20": "NDCG@20"}
GROUPS = ("overall", "cold_start", "head", "mid", "tail")
GROUP_TITLES = {
    "overall": "All test targets",
    "cold_start": "Cold-start targets",
    "head": "Long tail: head items",
    "mid": "Long tail: mid items",
    "tail": "Long tail: tail items",
}
GROUP_SHORT = {
    "overall": "overall",
    "cold_start": "cold-start",
    "head": "head",
    "mid": "mid",
    "tail": "tail",
}
SECTIONS = (
    ("summary", "Summary"),
    ("comparison", "Comparison"),
    ("gates", "Layer-gate analysis"),
    ("prompts", "Prompt mixture"),
    ("efficiency", "Efficiency"),
    ("dataset", "Dataset"),
    ("provenance", "Provenance"),
)
FIGURES_DIR = "figures"
FIGURE_NAMES = (
    "comparison",
    "gate_density",
    "gate_boxplot",
    "gate_heatmap",
    "prompt_mixture",
    "search",
)
HEATMAP_MAX_ITEMS = 64

# --- the paper's figures (MicroLens-100K; other data, a 7B backbone, 8 GPUs) -------------------
PAPER_NOTE = (
    "the paper's figures: LinkedOut paper, MicroLens-100K, LLaVA-OneVision 7B; other data, "
    "not comparable with this run"
)
# Tables 3 and 4 list HR@10, NDCG@10, HR@20, NDCG@20; stored here by metric name.
PAPER_METRICS: dict[str, tuple[str, str, dict[str, float]]] = {
    "id_only": (
        "SASRec",
        "Table 3",
        {"hr@10": 0.0909, "ndcg@10": 0.0517, "hr@20": 0.1278, "ndcg@20": 0.0610},
    ),
    "last_layer_last_token": (
        "Last layer last token",
        "Table 4",
        {"hr@10": 0.0763, "ndcg@10": 0.0404, "hr@20": 0.1121, "ndcg@20": 0.0494},
    ),
    "mean_pool_moe": (
        "Mean pooling+MoE",
        "Table 4",
        {"hr@10": 0.0888, "ndcg@10": 0.0471, "hr@20": 0.1291, "ndcg@20": 0.0572},
    ),
    "last_token_moe": (
        "Last token+MoE",
        "Table 4",
        {"hr@10": 0.0958, "ndcg@10": 0.0518, "hr@20": 0.1394, "ndcg@20": 0.0628},
    ),
    "full": (
        "LinkedOut (full)",
        "Tables 3-4",
        {"hr@10": 0.1015, "ndcg@10": 0.0548, "hr@20": 0.1477, "ndcg@20": 0.0664},
    ),
}
# Figure 5: mean gate contribution per layer (L12 is not stated in the text).
PAPER_GATE_PERCENT = {0: 16.4, 4: 0.5, 8: 40.9, 16: 6.7, 20: 20.5}
PAPER_EXTRACTION_S = 5.02  # s/video, batches of 100 on one H100 (section 4.5)
PAPER_MOE_MS = 5.1  # MoE fusion per query (Table 5 discussion)
PAPER_RANKING_MS = 0.846  # ranking per query
PAPER_QUERY_MS = 5.964  # Store-and-Retrieve total per query (Table 5)
PAPER_QPS = 168  # supplementary Table 8, one H100
PAPER_LAYOUT = (6, 64, 4096)  # supplementary Table 7: 3.15 MB/video, 3.15 TB/1M, 31.5 TB/10M
PAPER_STORE_MICROLENS = ("62.2 GB", 19_738)
PAPER_DATASET = {  # Table 1, MicroLens-100K
    "users": "100,000",
    "items": "19,738",
    "interactions": "719,405",
    "train": "478,355",
    "valid": "100,000",
    "test": "100,000",
    "seq_mean": "7.19",
    "seq_range": "5–15",
}

REPO_ROOT = Path(__file__).resolve().parents[2]
GREY = "#8a94a6"


def variant_label(variant: str) -> str:
    """The report's name of a variant: its registered label, else its name."""
    return get_variant(variant).label if variant in variant_names() else variant


def variant_color(variant: str) -> str:
    return get_variant(variant).color if variant in variant_names() else GREY


def variant_order(variant: str) -> int:
    """Registered variants first, in the registry's order (the ablation table's rows)."""
    names = variant_names()
    return names.index(variant) if variant in names else len(names)


@dataclass
class ReportPaths:
    html: Path
    markdown: Path
    table_markdown: str = ""
    figures_markdown: dict[str, str] = field(default_factory=dict)
