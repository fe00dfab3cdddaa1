"""`linkedout extract` and `linkedout store` through the CLI entry point (pipelines.cli.main).

One extraction of the demo dataset (tiny checkpoint: random weights, no world knowledge) is shared
by the module; the other tests read its store or fail before any Ray work starts."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from featurizer.config import load_preset
from featurizer.store import read_current
from pipelines.cli import main
from pipelines.dataset.ingest import read_titles

pytestmark = pytest.mark.slow

SUMMARY = re.compile(
    r"extracted (\d+), skipped (\d+) \(already stored\), failed (\d+); "
    r"[\d.]+ s/video; store (.+)/([0-9a-f]{12})(?:; rows per prompt of the bank: [\d, ]+)?"
)


@dataclass
class CliRun:
    dataset: Path
    store: Path
    model: Path
    fingerprint: str
    code: int
    stdout: str


@pytest.fixture(scope="module")
def cli_run(
    demo_dataset: Path,
    tiny_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
    ray_session: None,
) -> CliRun:
    root = tmp_path_factory.mktemp("cli-extract")
    dataset, store = root / "dataset", root / "store"
    shutil.copytree(demo_dataset, dataset)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(
            ["extract", "--dataset", str(dataset), "--store", str(store)]
            + ["--model", str(tiny_model)]
        )
    fingerprint = load_preset("demo").replace(model=str(tiny_model)).fingerprint()
    return CliRun(dataset, store, tiny_model, fingerprint, code, out.getvalue())


def test_extract_exits_0_and_prints_its_summary(cli_run: CliRun) -> None:
    assert cli_run.code == 0
    lines = cli_run.stdout.splitlines()
    assert len(lines) == 1, cli_run.stdout  # no failures: no per-item lines
    match = SUMMARY.fullmatch(lines[0])
    assert match, lines[0]
    assert match.group(1, 2, 3) == ("12", "0", "0")
    assert match.group(4, 5) == (str(cli_run.store), cli_run.fingerprint)
    assert read_current(cli_run.store) == cli_run.fingerprint  # the first complete version


def test_extract_rerun_reports_everything_skipped(
    cli_run: CliRun, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["extract", "--dataset", str(cli_run.dataset), "--store", str(cli_run.store)]
        + ["--model", str(cli_run.model)]
    )
    out = capsys.readouterr().out
    assert code == 0
    match = SUMMARY.fullmatch(out.strip())
    assert match, out
    assert match.group(1, 2, 3) == ("0", "12", "0")


def test_store_verify_exits_0_on_the_extracted_store(
    cli_run: CliRun, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["store", "verify", str(cli_run.store)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK: prompt bank {cli_run.store / cli_run.fingerprint}: 3 prompts")
    assert out.count(": 12 committed rows, 0 failures") == 3


def test_store_info_describes_the_current_version(
    cli_run: CliRun, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["store", "info", str(cli_run.store)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"prompt bank {cli_run.store / cli_run.fingerprint} (CURRENT)"
    assert out.count("12 committed, 0 failed") == 3  # each prompt's version
    assert "(L=6)" in out and "K=64: 48 merged old (bipartite) + G=16 new" in out


def test_items_naming_an_item_without_video_is_a_one_line_error(
    cli_run: CliRun, capsys: pytest.CaptureFixture[str]
) -> None:
    videos = {p.stem for p in (cli_run.dataset / "videos").glob("*.mp4")}
    id_only = sorted(set(read_titles(cli_run.dataset)) - videos)
    assert id_only, "the demo dataset has an ID-only item"
    item = id_only[0]
    primary = load_preset("demo").replace(model=str(cli_run.model)).members()[0]
    snapshots = cli_run.store / primary.fingerprint() / "index"
    before = sorted(str(p.relative_to(snapshots)) for p in snapshots.rglob("*"))
    code = main(
        ["extract", "--dataset", str(cli_run.dataset), "--store", str(cli_run.store)]
        + ["--model", str(cli_run.model), "--items", f"v0001,{item}"]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("linkedout extract: error: ")
    assert repr(item) in lines[0] and "no video" in lines[0]
    assert "v0001" not in lines[0].split("no video", 1)[1]  # only the missing item is named
    assert (
        sorted(str(p.relative_to(snapshots)) for p in snapshots.rglob("*")) == before
    )  # nothing was published


def test_store_info_on_a_directory_without_store_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["store", "info", str(tmp_path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("linkedout store: error: ") and str(tmp_path) in lines[0]
