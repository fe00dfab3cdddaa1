"""Compact views and tapped layers: a view reads like any version (`store info`, `store verify`),
a derivation that would change nothing or reorder the layers is refused, and so is a preset that
names a layer twice. Each refusal is one line naming the flag or field, and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from featurizer.store import list_versions
from tests.faults.conftest import assert_one_line_error, run_cli
from tests.synthetic import write_topic_store

ITEMS = [f"i{i:03d}" for i in range(6)]


@pytest.fixture(scope="module")
def view(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store (layers 0, 4, 8) and its int8 view; returns the view's directory."""
    root = write_topic_store(tmp_path_factory.mktemp("views") / "store", ITEMS, n_topics=3)
    result = run_cli(["store", "derive", root, "--int8"])
    assert result.code == 0, result.stderr
    return root / result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("action", ["info", "verify"])
def test_store_info_and_verify_read_an_int8_view_like_any_version(
    view: Path, action: str, fault_report
) -> None:
    result = run_cli(["store", action, view])

    fault_report.record(
        f"linkedout store {action} on an int8 view",
        survived=result.code == 0,
        message=result.stdout.splitlines()[0] if result.stdout else result.error_line,
    )
    assert result.code == 0, result.stderr
    assert view.name in result.stdout


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--layers", "0,4,8"], "nothing to derive"),
        (["--layers", "8,0"], "not in increasing order"),
        (["--int8"], "int8 rows already"),
    ],
    ids=["all-layers-in-order", "reordered", "int8-of-int8"],
)
def test_a_derivation_that_changes_nothing_or_reorders_layers_is_refused(
    view: Path, flags: list[str], named: str, fault_report
) -> None:
    source = (
        view
        if flags == ["--int8"]
        else view.parent
        / json.loads((view / "extractor.json").read_text())["derived_from"]["fingerprint"]
    )
    before = list_versions(view.parent)

    result = run_cli(["store", "derive", source, *flags])

    line = assert_one_line_error(result, named)
    fault_report.record(f"store derive {' '.join(flags)}", survived=True, message=line)
    assert list_versions(view.parent) == before


@pytest.mark.parametrize("layers", [[4, 4], [20, 0]], ids=["repeated", "reordered"])
def test_a_preset_naming_a_layer_twice_or_out_of_order_is_refused(
    layers: list[int], demo_dataset: Path, tmp_path: Path, one_prompt_preset: Path, fault_report
) -> None:
    values = json.loads(one_prompt_preset.read_text())
    values["layers"] = layers
    preset = tmp_path / "layers.json"
    preset.write_text(json.dumps(values))

    result = run_cli(
        ["extract", "--dataset", demo_dataset, "--store", tmp_path / "store", "--preset", preset]
    )

    line = assert_one_line_error(result, str(preset), "layers")
    fault_report.record(f"a preset with layers {layers}", survived=True, message=line)
    assert not (tmp_path / "store").exists()
