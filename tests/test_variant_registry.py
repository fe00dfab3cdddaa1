"""Adding a variant is one edit: a ninth variant, registered and nothing else, is a model the
encoder builds, a choice of the CLI, a training step, an index and a report dependency in the
Dagster graph, and a row of the report's comparison."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import torch

from dagster_project.definitions import build_definitions
from dagster_project.resources import default_resources
from pipelines.cli import build_parser
from pipelines.report import write_report
from recmodel.config import ModelConfig
from recmodel.model import build_model
from recmodel.variants import Variant, register, unregister

FIXTURE_RUNS = Path(__file__).resolve().parent / "fixtures" / "report_runs"
NINTH = Variant(
    "last_token_id_fusion",
    "Last token + MoE + ID fusion",
    "The last token per layer through the cross-layer MoE, fused with an ID embedding.",
    encoder="layer_moe",
    view="last",
    id_fusion=True,
    color="#2b8a3e",
)


@pytest.fixture
def ninth() -> Iterator[Variant]:
    register(NINTH)
    yield NINTH
    unregister(NINTH.name)


def _subcommand(name: str):
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a.choices, dict) and name in a.choices]
    return sub.choices[name]


def test_the_encoder_builds_a_ninth_variant_from_its_fields(ninth) -> None:
    cfg = ModelConfig(variant=ninth.name, n_items=5, n_layers=2, n_tokens=4, feature_dim=8)
    model = build_model(cfg)

    encoding = model.items(torch.arange(5), torch.randn(5, 2, 8), torch.ones(5, dtype=torch.bool))

    assert model.items.fusion is not None and model.items.content.moe is not None
    assert encoding.vectors.shape == (5, cfg.d_model) and encoding.id_gate is not None


def test_a_ninth_variant_is_a_choice_of_the_cli(ninth) -> None:
    [variant] = [a for a in _subcommand("train")._actions if a.dest == "variant"]
    [variants] = [a for a in _subcommand("sweep")._actions if a.dest == "variants"]

    assert ninth.name in variant.choices
    assert ninth.name in variants.help and "all 9" in variants.help


def test_a_ninth_variant_is_in_the_dagster_asset_graph(ninth) -> None:
    graph = build_definitions(default_resources()).resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    report = {k.to_user_string() for k in graph.get(dg.AssetKey("evaluation_report")).parent_keys}
    ranker = graph.get(dg.AssetKey(f"ranker_{ninth.name}"))

    expected = {f"{p}_{ninth.name}" for p in ("ranker", "item_embeddings", "item_index")}
    assert expected <= keys and expected <= report
    assert ranker.description.startswith(ninth.description)


def test_a_ninth_variant_is_a_row_of_the_reports_comparison(ninth, tmp_path) -> None:
    runs = Path(shutil.copytree(FIXTURE_RUNS, tmp_path / "runs"))
    shutil.copytree(runs / "full", runs / ninth.name)
    for name in ("config.json", "metrics.json"):
        path = runs / ninth.name / name
        path.write_text(json.dumps({**json.loads(path.read_text()), "variant": ninth.name}))

    paths = write_report(runs / "full", out=tmp_path / "report")

    assert f"{ninth.label} `{ninth.name}`" in paths.table_markdown
