"""Prompt banks end to end (paper §3.4): the demo's three prompts extracted through Ray into one
store version per prompt and a bank version; a fourth prompt added, then one removed; the bank
read by `store info` and trained on by `full_prompt_bank`.

One dataset copy and one store go through module-scoped stages, each one extraction run:

    three    the demo preset's bank of three prompts over the 12 demo videos, fresh store
    four     the same three and a fourth prompt
    two      the first and the third prompt only

The tiny checkpoint has random weights: these tests pin the mechanics, not feature quality.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from featurizer.config import ExtractorConfig, load_preset
from featurizer.store import FeatureStore, read_current
from featurizer.store.bank import PromptBank
from pipelines.extraction.extract import ExtractSummary, extract_catalog
from pipelines.store.status import store_info, store_verify
from pipelines.training.run import train_run
from tests.worker_hooks import INVOCATION_LOG_ENV

pytestmark = pytest.mark.slow

FOURTH = '<video>\nThis short video is titled "{title}". What mood does it set?'


@dataclass
class Run:
    summary: ExtractSummary
    calls: list[str]  # one line per model call (a video, for every prompt it was extracted for)
    snapshots: dict[str, list[str]]  # member fingerprint -> its index files after the run


@dataclass
class Workspace:
    dataset: Path
    store: Path
    root: Path

    def run(self, config: ExtractorConfig, name: str) -> Run:
        log = self.root / f"{name}.calls"
        os.environ[INVOCATION_LOG_ENV] = str(log)
        try:
            summary = extract_catalog(self.dataset, self.store, config, progress=False)
        finally:
            del os.environ[INVOCATION_LOG_ENV]
        calls = log.read_text().splitlines() if log.exists() else []
        snapshots = {
            m.fingerprint(): sorted(
                str(p.relative_to(self.store))
                for p in (self.store / m.fingerprint() / "index").rglob("*")
            )
            for m in config.members()
        }
        return Run(summary, calls, snapshots)


@pytest.fixture(scope="module")
def bank(tiny_model: Path) -> ExtractorConfig:
    return load_preset("demo").replace(model=str(tiny_model))


@pytest.fixture(scope="module")
def ws(demo_dataset: Path, tmp_path_factory: pytest.TempPathFactory, ray_session: None):
    root = tmp_path_factory.mktemp("bank")
    shutil.copytree(demo_dataset, root / "dataset")
    return Workspace(dataset=root / "dataset", store=root / "store", root=root)


@pytest.fixture(scope="module")
def three(ws: Workspace, bank: ExtractorConfig) -> Run:
    return ws.run(bank, "three")


@pytest.fixture(scope="module")
def four(ws: Workspace, bank: ExtractorConfig, three: Run) -> Run:
    return ws.run(bank.replace(prompts=(*bank.prompts, FOURTH)), "four")


@pytest.fixture(scope="module")
def two(ws: Workspace, bank: ExtractorConfig, four: Run) -> Run:
    return ws.run(bank.replace(prompts=(bank.prompts[0], bank.prompts[2])), "two")


def test_the_demo_preset_is_a_bank_of_three_prompts_led_by_the_single_prompt_demo() -> None:
    demo = load_preset("demo")

    assert demo.is_bank and len(demo.prompts) == 3
    assert demo.members()[0].fingerprint() == demo.replace(prompts=()).fingerprint()


def test_each_prompt_is_extracted_into_its_own_version_with_one_model_call_per_video(
    ws: Workspace, bank: ExtractorConfig, three: Run
) -> None:
    assert (three.summary.extracted, three.summary.failed) == (12, 0)
    assert three.summary.prompt_rows == [12, 12, 12]
    assert sorted(three.calls) == sorted(p.stem for p in (ws.dataset / "videos").glob("*.mp4"))
    for member in bank.members():
        version = FeatureStore.open(ws.store, member.fingerprint())
        assert len(version.index()) == 12 and version.verify().ok
        assert version.extractor["prompt_template"] == member.prompt_template


def test_the_bank_becomes_current_and_reads_every_prompts_rows(
    ws: Workspace, bank: ExtractorConfig, three: Run
) -> None:
    assert read_current(ws.store) == bank.fingerprint() == three.summary.fingerprint
    prompts = PromptBank.open(ws.store)
    L, K, D = prompts.shape_per_item

    rows = prompts.read_rows(prompts.item_rows(["v0001", "v0002"]))

    assert rows.shape == (2, 3 * L, K, D)
    single = FeatureStore.open(ws.store, bank.members()[1].fingerprint())
    assert (rows[0, L : 2 * L] == single.read(["v0001"])[0]).all()
    assert FeatureStore.open(ws.store).fingerprint == bank.members()[0].fingerprint()


def test_store_info_lists_the_prompts_and_verify_checks_every_version(
    ws: Workspace, bank: ExtractorConfig, three: Run
) -> None:
    info = store_info(ws.store)
    report = store_verify(ws.store)

    assert info.startswith(f"prompt bank {ws.store / bank.fingerprint()} (CURRENT)")
    for i, member in enumerate(bank.members()):
        assert f"prompt {i}      {member.fingerprint()}" in info
    assert "What is its main subject" in info
    assert report.ok and len(report.members) == 3


def test_adding_a_fourth_prompt_extracts_only_that_prompt(
    ws: Workspace, three: Run, four: Run
) -> None:
    assert four.summary.prompt_rows == [0, 0, 0, 12]
    assert len(four.calls) == 12  # one model call per video, for the new prompt alone
    for fingerprint, snapshots in three.snapshots.items():
        assert four.snapshots[fingerprint] == snapshots  # the three stored prompts: no commit


def test_removing_a_prompt_extracts_nothing(ws: Workspace, two: Run) -> None:
    assert two.summary.prompt_rows == [0, 0]
    assert (two.summary.extracted, two.summary.skipped, two.calls) == (0, 12, [])
    assert (
        PromptBank.open(ws.store, two.summary.fingerprint)
        .prompts[1]
        .endswith("Who would enjoy watching it, and why?")
    )


def test_full_prompt_bank_trains_on_the_current_bank(
    ws: Workspace, bank: ExtractorConfig, three: Run, tmp_path: Path
) -> None:
    from pipelines.dataset.ingest import ingest

    ingest(ws.dataset)
    result = train_run(
        ws.dataset,
        ws.store,
        tmp_path / "run",
        variant="full_prompt_bank",
        epochs=1,
        config="demo",
        progress=False,
    )

    gates = pq.read_table(tmp_path / "run/gates.parquet")
    assert result.n_missing_features == 1  # the demo's ID-only item
    assert [c for c in gates.column_names if c.startswith("prompt_")] == [
        "prompt_0",
        "prompt_1",
        "prompt_2",
    ]
    total = sum(gates.column(f"prompt_{p}").to_numpy() for p in range(3))
    assert abs(total - 1).max() < 1e-5
