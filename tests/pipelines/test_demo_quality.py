"""The demo's quality claims, end to end on the demo dataset itself (pipelines/demo.py's size and
seed, features from the tiny random-weight LLaVA-OneVision of the demo preset, the demo training
settings): content predicts preference (pipelines/demo/generate.py), so

1. `full` beats `id_only` on test HR@10 overall,
2. and by at least 2x on cold-start targets (test targets with no training interaction),
3. every learned variant beats `popularity` on test NDCG@10 and HR@10 overall.

One sweep of every single-prompt variant (about 2 minutes on 2 CPU cores) over the features of
the demo bank's first prompt; the tests only read its metrics. `full_prompt_bank` (three prompts,
three times the extraction and the encoder's work) is trained by the demo itself and shown in its
report; it is left out here to keep the suite's time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from featurizer.config import load_preset
from pipelines.dataset.ingest import ingest
from pipelines.demo.dataset import DEMO_SEED, DEMO_USERS, DEMO_VIDEOS
from pipelines.demo.generate import make_demo_dataset
from pipelines.extraction.extract import extract_catalog
from pipelines.training.settings import DEMO_CONFIG
from pipelines.training.sweep import train_sweep
from recmodel.variants import variant_names

VARIANTS = variant_names()  # the registered variants

pytestmark = pytest.mark.slow

SWEPT = [v for v in VARIANTS if v != "full_prompt_bank"]
LEARNED = [v for v in SWEPT if v != "popularity"]


@pytest.fixture(scope="module")
def demo_metrics(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Any]:
    """variant -> metrics.json's "test" section, every variant trained on the demo dataset."""
    import ray

    from pipelines.ray_runtime import ensure_ray

    root = tmp_path_factory.mktemp("demo-quality")
    dataset, store = root / "dataset", root / "store"
    make_demo_dataset(dataset, n_videos=DEMO_VIDEOS, n_users=DEMO_USERS, seed=DEMO_SEED)
    ingest(dataset)
    config = load_preset("demo").replace(model=str(tiny_model), prompts=())
    ensure_ray()
    try:
        summary = extract_catalog(dataset, store, config, progress=False)
    finally:
        ray.shutdown()  # training runs in this process; Ray is only the extraction's
    assert summary.extracted == DEMO_VIDEOS and summary.failed == 0

    metrics = train_sweep(dataset, store, root / "runs", SWEPT, config=DEMO_CONFIG, progress=False)
    return {variant: m["test"] for variant, m in metrics.items()}


def _describe(demo_metrics: dict[str, Any]) -> str:
    return "; ".join(
        f"{v}: HR@10 {m['overall']['hr@10']:.3f} NDCG@10 {m['overall']['ndcg@10']:.3f} "
        f"cold HR@10 {m['cold_start']['hr@10']:.3f}"
        for v, m in demo_metrics.items()
    )


def test_full_beats_id_only_overall(demo_metrics: dict[str, Any]) -> None:
    full, id_only = demo_metrics["full"]["overall"], demo_metrics["id_only"]["overall"]

    assert full["n"] == id_only["n"] == DEMO_USERS
    assert full["hr@10"] > id_only["hr@10"], _describe(demo_metrics)


def test_full_doubles_id_only_on_cold_start(demo_metrics: dict[str, Any]) -> None:
    full, id_only = demo_metrics["full"]["cold_start"], demo_metrics["id_only"]["cold_start"]

    assert full["n"] == id_only["n"] >= 50  # enough cold-start targets to mean something
    assert full["hr@10"] > 0
    assert full["hr@10"] >= 2 * id_only["hr@10"], _describe(demo_metrics)


@pytest.mark.parametrize("variant", LEARNED)
def test_every_learned_variant_beats_popularity(demo_metrics: dict[str, Any], variant: str) -> None:
    ours, popularity = demo_metrics[variant]["overall"], demo_metrics["popularity"]["overall"]

    assert ours["ndcg@10"] > popularity["ndcg@10"], _describe(demo_metrics)
    assert ours["hr@10"] > popularity["hr@10"], _describe(demo_metrics)
