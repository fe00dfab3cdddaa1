"""`linkedout store derive` and what reads its views: info, verify and training."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from featurizer.store import FeatureStore, read_current
from featurizer.store.derive import Derivation
from pipelines.cli import main
from pipelines.errors import PipelineError
from pipelines.training.run import train_run
from pipelines.training.views import ViewSpec, parse_view
from tests.synthetic import write_topic_dataset, write_topic_store

N_ITEMS = 24


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    write_topic_dataset(tmp_path / "dataset", n_users=40, n_items=N_ITEMS, n_topics=3)
    write_topic_store(tmp_path / "store", [f"i{i:03d}" for i in range(N_ITEMS)], n_topics=3)
    return tmp_path


def _derive(store: Path, *flags: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["store", "derive", str(store), *flags])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_derive_prints_the_views_fingerprint_on_its_last_line(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _derive(workspace / "store", "--layers", "0,8", "--k-tokens", "4", capsys=capsys)

    fingerprint = out.strip().splitlines()[-1]
    view = FeatureStore.open(workspace / "store", fingerprint)
    assert code == 0
    assert view.shape_per_item == (2, 4, 8)
    assert read_current(workspace / "store") != fingerprint  # CURRENT still names the source


def test_store_info_and_verify_read_a_view_as_a_version(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = _derive(workspace / "store", "--layers", "4", capsys=capsys)
    view = workspace / "store" / out.strip().splitlines()[-1]

    assert main(["store", "info", str(view)]) == 0
    info = capsys.readouterr().out
    assert main(["store", "verify", str(view)]) == 0

    assert "derived from" in info and "layers [4]" in info


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--layers", "0,x"], "--layers: '0,x' is not a comma-separated list"),
        (["--layers", "0,12"], "--layers: [12] not in the source's tapped layers"),
        (["--k-tokens", "1"], "--k-tokens: 1 must be more than the G = 2 new tokens"),
        ([], "nothing to derive"),
    ],
)
def test_bad_derive_flag_is_a_one_line_error_naming_it(
    workspace: Path, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _derive(workspace / "store", *flags, capsys=capsys)

    assert code != 0
    assert len(err.strip().splitlines()) == 1 and message in err


def test_derive_flags_with_another_store_action_are_refused(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["store", "info", str(workspace / "store"), "--layers", "0"])

    assert (
        code != 0
        and "--layers, --k-tokens and --int8 go with `store derive`" in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "flags", [["--layers", "0,8", "--k-tokens", "4"], ["--int8"]], ids=["fewer", "int8"]
)
def test_full_trains_on_a_view(
    workspace: Path, flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = _derive(workspace / "store", *flags, capsys=capsys)
    view = workspace / "store" / out.strip().splitlines()[-1]

    result = train_run(
        workspace / "dataset", view, workspace / "run", "full", epochs=1, progress=False
    )

    assert result.n_missing_features == 0
    assert result.metrics["test"]["overall"]["n"] > 0
    recorded = json.loads((workspace / "run" / "config.json").read_text())["store"]
    assert Path(recorded["path"]) / recorded["fingerprint"] == view.resolve()


def test_view_names_say_what_each_keeps() -> None:
    assert parse_view("int8").name == "int8"
    assert parse_view("k_tokens=32").derivation == Derivation(k_tokens=32)
    assert parse_view("layers=0,8,20+int8") == ViewSpec(
        "layers-0-8-20+int8", Derivation(layers=(0, 8, 20), int8=True)
    )


@pytest.mark.parametrize("text", ["int9", "k_tokens=many", "layers=a,b", "+", "int8=1"])
def test_bad_view_is_a_one_line_error_naming_it(text: str) -> None:
    with pytest.raises(PipelineError, match=f"store view {re.escape(repr(text))}") as error:
        parse_view(text)

    assert "\n" not in str(error.value)
