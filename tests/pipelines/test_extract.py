"""End-to-end extraction into the feature store (docs/store.md): Ray Data decode tasks, the
tiny model in an actor pool, rows in the store, the index committed by the driver.

Extraction runs are expensive (actor start + model load), so one dataset copy and one store go
through a chain of module-scoped stages, each stage one run; the tests assert on what each stage
recorded:

    first_run      the 12 demo videos, fresh store
    rerun          nothing changed
    added_run      3 good videos + 4 undecodable files added
    changed_run    one video's bytes replaced by another video's
    not_extracted  one more video added, no run (integrity / sensor view)
    subset_run     a changed prompt (new version), --items of two videos, make_current=True
    complete_run   the changed prompt over the whole catalog, make_current=True

The tiny checkpoint has random weights: its features carry no world knowledge; these tests pin
the pipeline's mechanics, not feature quality.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from featurizer.config import ExtractorConfig, load_preset
from featurizer.decode import DecodeError, decode_video, sha256_file
from featurizer.store import FeatureStore, VerifyReport, read_current
from pipelines.dataset.catalog import scan_videos
from pipelines.extraction.extract import ExtractSummary, extract_catalog
from pipelines.store.status import store_integrity, unextracted_videos

pytestmark = pytest.mark.slow

ADDED = ("v9001", "v9002", "v9003")  # copies of demo videos under new item ids
BROKEN = ("v9101", "v9102", "v9103", "v9104")  # zero-byte, truncated, text, random bytes
CHANGED, CHANGED_FROM = "v0012", "v0002"  # v0012's file is rewritten with v0002's bytes
LATE = "v9201"  # added after changed_run and not extracted by the first config
SUBSET = ["v0003", "v0005"]  # the --items run of the second config
PINNED = "v0001"  # never touched: compared against the in-process extractor
PROMPT_2 = "<video>\nA clip titled {title}. What happens in it?"


@dataclass
class Workspace:
    dataset: Path
    store: Path

    @property
    def videos(self) -> Path:
        return self.dataset / "videos"

    def video_items(self) -> set[str]:
        return {p.stem for p in self.videos.glob("*.mp4")}


@dataclass
class Stage:
    summary: ExtractSummary
    rows: dict[str, tuple[int, str]]  # item -> (row, source_sha256) in the committed index
    failures: dict[str, tuple[str, str]]  # item -> (stage, error)
    current_before: str | None
    current_after: str | None


def _stage(summary: ExtractSummary, store: Path, current_before: str | None) -> Stage:
    version = FeatureStore.open(store, summary.fingerprint)
    index = version.index_table().to_pylist()
    failures = version.failures_table().to_pylist()
    return Stage(
        summary=summary,
        rows={r["item"]: (r["row"], r["source_sha256"]) for r in index},
        failures={r["item"]: (r["stage"], r["error"]) for r in failures},
        current_before=current_before,
        current_after=read_current(store),
    )


def _run(ws: Workspace, config: ExtractorConfig, **kwargs: object) -> Stage:
    before = read_current(ws.store)
    summary = extract_catalog(ws.dataset, ws.store, config, progress=False, **kwargs)
    return _stage(summary, ws.store, before)


def _decoder_reason(path: Path, config: ExtractorConfig) -> str:
    """What decode_video says about `path`, as one line (as the pipeline records it)."""
    with pytest.raises(DecodeError) as info:
        decode_video(path, config.frames, config.resolution)
    return " ".join(str(info.value).split())[:500]


# --- stages ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config(tiny_model: Path) -> ExtractorConfig:
    """The demo's first prompt alone: one store version (prompt banks: test_extract_bank)."""
    return load_preset("demo").replace(model=str(tiny_model), prompts=())


@pytest.fixture(scope="module")
def config_2(config: ExtractorConfig) -> ExtractorConfig:
    return config.replace(prompt_template=PROMPT_2)


@pytest.fixture(scope="module")
def hidden_size(tiny_model: Path) -> int:
    return int(json.loads((tiny_model / "config.json").read_text())["text_config"]["hidden_size"])


@pytest.fixture(scope="module")
def ws(
    demo_dataset: Path, tmp_path_factory: pytest.TempPathFactory, ray_session: None
) -> Workspace:
    root = tmp_path_factory.mktemp("extract")
    shutil.copytree(demo_dataset, root / "dataset")
    return Workspace(dataset=root / "dataset", store=root / "store")


@dataclass
class FirstRun(Stage):
    demo_shas: dict[str, str] | None = None  # sha256 of each demo video before the run
    verify: VerifyReport | None = None
    integrity: list[str] | None = None


@pytest.fixture(scope="module")
def first_run(ws: Workspace, config: ExtractorConfig) -> FirstRun:
    demo_shas = {p.stem: sha256_file(p) for p in ws.videos.glob("*.mp4")}
    stage = _run(ws, config)
    return FirstRun(
        **vars(stage),
        demo_shas=demo_shas,
        verify=FeatureStore.open(ws.store, stage.summary.fingerprint).verify(),
        integrity=store_integrity(ws.dataset, ws.store, config),
    )


@pytest.fixture(scope="module")
def rerun(ws: Workspace, config: ExtractorConfig, first_run: FirstRun) -> Stage:
    return _run(ws, config)


@dataclass
class AddedRun(Stage):
    reasons: dict[str, str] | None = None  # what decode_video says about each broken file


@pytest.fixture(scope="module")
def added_run(ws: Workspace, config: ExtractorConfig, rerun: Stage) -> AddedRun:
    demo_videos = sorted(ws.videos.glob("*.mp4"))
    for item, source in zip(ADDED, demo_videos[3:6], strict=True):
        shutil.copyfile(source, ws.videos / f"{item}.mp4")
    real = demo_videos[0].read_bytes()
    contents = [
        b"",
        real[: len(real) // 2],
        b"this is a text file, not a video\n" * 20,
        np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    ]
    for item, data in zip(BROKEN, contents, strict=True):
        (ws.videos / f"{item}.mp4").write_bytes(data)
    reasons = {item: _decoder_reason(ws.videos / f"{item}.mp4", config) for item in BROKEN}
    return AddedRun(**vars(_run(ws, config)), reasons=reasons)


@dataclass
class ChangedRun(Stage):
    integrity: list[str] | None = None


@pytest.fixture(scope="module")
def changed_run(ws: Workspace, config: ExtractorConfig, added_run: AddedRun) -> ChangedRun:
    (ws.videos / f"{CHANGED}.mp4").write_bytes((ws.videos / f"{CHANGED_FROM}.mp4").read_bytes())
    stage = _run(ws, config)
    return ChangedRun(**vars(stage), integrity=store_integrity(ws.dataset, ws.store, config))


@dataclass
class NotExtracted:
    integrity: list[str]
    unextracted: list[tuple[str, int]]
    size: int


@pytest.fixture(scope="module")
def not_extracted(ws: Workspace, config: ExtractorConfig, changed_run: ChangedRun) -> NotExtracted:
    shutil.copyfile(ws.videos / "v0004.mp4", ws.videos / f"{LATE}.mp4")
    return NotExtracted(
        integrity=store_integrity(ws.dataset, ws.store, config),
        unextracted=unextracted_videos(ws.dataset, ws.store, config),
        size=(ws.videos / f"{LATE}.mp4").stat().st_size,
    )


@pytest.fixture(scope="module")
def subset_run(ws: Workspace, config_2: ExtractorConfig, not_extracted: NotExtracted) -> Stage:
    return _run(ws, config_2, items=SUBSET, make_current=True)


@dataclass
class CompleteRun(Stage):
    integrity: list[str] | None = None


@pytest.fixture(scope="module")
def complete_run(ws: Workspace, config_2: ExtractorConfig, subset_run: Stage) -> CompleteRun:
    stage = _run(ws, config_2, make_current=True)
    return CompleteRun(**vars(stage), integrity=store_integrity(ws.dataset, ws.store, config_2))


# --- behaviours -----------------------------------------------------------------------------


def test_every_decodable_video_is_stored_as_float16_rows_and_verifies(
    first_run: FirstRun, ws: Workspace, config: ExtractorConfig, hidden_size: int
) -> None:
    s = first_run.summary
    assert first_run.demo_shas is not None and len(first_run.demo_shas) == 12
    assert (s.extracted, s.skipped, s.failed, s.failures) == (12, 0, 0, [])
    assert s.fingerprint == config.fingerprint()
    assert {item: sha for item, (_, sha) in first_run.rows.items()} == first_run.demo_shas
    assert first_run.failures == {}
    assert len({row for row, _ in first_run.rows.values()}) == 12
    version = FeatureStore.open(ws.store, s.fingerprint)
    assert version.shape_per_item == (6, 64, hidden_size)
    features = version.read(sorted(first_run.demo_shas))
    assert features.shape == (12, 6, 64, hidden_size)
    assert features.dtype == np.float16
    assert np.isfinite(features).all()
    assert len({f.tobytes() for f in features}) == 12  # one distinct row per video
    assert first_run.verify is not None and first_run.verify.ok, first_run.verify.describe()
    assert first_run.verify.n_rows == 12
    assert first_run.integrity == []


def test_rerun_with_nothing_changed_extracts_nothing(rerun: Stage, first_run: FirstRun) -> None:
    s = rerun.summary
    assert (s.extracted, s.skipped, s.failed) == (0, 12, 0)
    assert s.fingerprint == first_run.summary.fingerprint
    assert rerun.rows == first_run.rows  # the index is untouched


def test_added_videos_are_exactly_what_the_next_run_extracts(
    added_run: AddedRun, rerun: Stage
) -> None:
    s = added_run.summary
    assert s.extracted == 3
    assert s.skipped == 12
    assert set(added_run.rows) - set(rerun.rows) == set(ADDED)
    assert {item: added_run.rows[item] for item in rerun.rows} == rerun.rows  # the old stay
    new_rows = [added_run.rows[item][0] for item in ADDED]
    assert min(new_rows) > max(row for row, _ in rerun.rows.values())


def test_changed_video_is_reextracted_into_a_new_row(
    changed_run: ChangedRun, added_run: AddedRun, ws: Workspace
) -> None:
    s = changed_run.summary
    assert s.extracted == 1
    stored_before = set(added_run.rows)
    assert s.skipped == len(stored_before) - 1  # every other stored video
    assert s.failed == len(BROKEN)  # failure rows are retried, and fail again
    old_row, old_sha = added_run.rows[CHANGED]
    new_row, new_sha = changed_run.rows[CHANGED]
    assert new_sha == sha256_file(ws.videos / f"{CHANGED_FROM}.mp4") != old_sha
    assert new_row > max(row for row, _ in added_run.rows.values())  # rows are never reused
    assert new_row != old_row
    others = stored_before - {CHANGED}
    assert {i: changed_run.rows[i] for i in others} == {i: added_run.rows[i] for i in others}
    assert set(changed_run.rows) == stored_before
    assert FeatureStore.open(ws.store, s.fingerprint).verify().ok


def test_undecodable_files_become_decode_failure_rows(added_run: AddedRun) -> None:
    assert added_run.reasons is not None
    assert added_run.summary.failed == len(BROKEN)
    assert added_run.failures == {item: ("decode", added_run.reasons[item]) for item in BROKEN}
    assert sorted(added_run.summary.failures) == sorted(
        (item, "decode", added_run.reasons[item]) for item in BROKEN
    )
    for item in BROKEN:
        assert added_run.reasons[item].startswith(f"{item}.mp4: cannot decode: ")
    assert "empty file (0 bytes)" in added_run.reasons[BROKEN[0]]
    assert set(added_run.rows).isdisjoint(BROKEN)
    assert set(ADDED) <= set(added_run.rows)  # the rest of the run was stored
    describe = added_run.summary.describe()
    for item in BROKEN:
        assert f"failed {item} (decode): " in describe


def test_items_restricts_the_run_to_those_items(subset_run: Stage, first_run: FirstRun) -> None:
    s = subset_run.summary
    assert s.fingerprint != first_run.summary.fingerprint  # a changed prompt: a new version
    assert (s.extracted, s.skipped, s.failed) == (len(SUBSET), 0, 0)
    assert set(subset_run.rows) == set(SUBSET)
    assert subset_run.failures == {}


def test_current_moves_only_to_a_complete_version(
    first_run: FirstRun, subset_run: Stage, complete_run: CompleteRun, ws: Workspace
) -> None:
    fp_1, fp_2 = first_run.summary.fingerprint, subset_run.summary.fingerprint
    assert first_run.current_before is None
    assert first_run.current_after == fp_1 and first_run.summary.is_current
    assert (ws.store / fp_2 / "extractor.json").is_file()
    assert (
        json.loads((ws.store / fp_2 / "extractor.json").read_text())["prompt_template"] == PROMPT_2
    )
    # make_current=True, but the version is partial: CURRENT stays where it was.
    assert subset_run.current_before == fp_1
    assert subset_run.current_after == fp_1 and not subset_run.summary.is_current
    # the whole catalog: the version is complete, so CURRENT moves.
    assert complete_run.summary.fingerprint == fp_2
    assert complete_run.current_before == fp_1
    assert complete_run.current_after == fp_2 and complete_run.summary.is_current
    assert complete_run.integrity == []
    assert set(complete_run.rows) | set(complete_run.failures) == ws.video_items()
    assert set(complete_run.failures) == set(BROKEN)
    assert complete_run.summary.skipped == len(SUBSET)


def test_store_integrity_names_items_with_neither_row_nor_failure_row(
    first_run: FirstRun, changed_run: ChangedRun, not_extracted: NotExtracted
) -> None:
    assert first_run.integrity == []
    assert changed_run.integrity == []  # failure rows count as covered
    assert len(not_extracted.integrity) == 1
    assert LATE in not_extracted.integrity[0]
    assert "neither a row nor a failure row" in not_extracted.integrity[0]


def test_unextracted_videos_lists_only_files_neither_stored_nor_failed(
    not_extracted: NotExtracted, ws: Workspace, config: ExtractorConfig, tmp_path: Path
) -> None:
    assert not_extracted.unextracted == [(LATE, not_extracted.size)]
    # a store with no version for the config yet: every video file is unextracted
    fresh = unextracted_videos(ws.dataset, tmp_path / "empty-store", config)
    assert {item for item, _ in fresh} == ws.video_items()


def test_actor_features_equal_the_in_process_extractor(
    first_run: FirstRun, ws: Workspace, config: ExtractorConfig
) -> None:
    import torch

    from featurizer.extractor import VideoLLMExtractor
    from pipelines.dataset.ingest import read_titles

    version = FeatureStore.open(ws.store, first_run.summary.fingerprint)
    stored = version.read([PINNED])[0]
    n_old = {r["item"]: r["n_old"] for r in version.index_table().to_pylist()}[PINNED]
    frames = decode_video(ws.videos / f"{PINNED}.mp4", config.frames, config.resolution)
    title = read_titles(ws.dataset).get(PINNED, "")
    assert title  # the prompt carries the title
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the actor (OMP_NUM_THREADS=1): same reduction order
    try:
        direct = VideoLLMExtractor(config).extract(frames, title)
    finally:
        torch.set_num_threads(threads)
    assert direct.n_old == n_old
    assert direct.features.shape == stored.shape and direct.features.dtype == np.float16
    k_old = config.old_tokens
    np.testing.assert_allclose(
        stored[:, :k_old].astype(np.float32),
        direct.features[:, :k_old].astype(np.float32),
        rtol=2e-3,
        atol=2e-3,
    )


def test_catalog_never_hashes_an_unchanged_file_twice(demo_dataset: Path, tmp_path: Path) -> None:
    """The catalog trusts (size, mtime): a file rewritten with the same size and its mtime put
    back keeps its old hash. Documents the stat-based cache that makes a rescan cost a stat."""
    (tmp_path / "videos").mkdir()
    video = tmp_path / "videos" / "a.mp4"
    shutil.copyfile(demo_dataset / "videos" / f"{PINNED}.mp4", video)
    first = scan_videos(tmp_path)
    assert first.new_items.to_pylist() == ["a"]
    assert first.video("a").sha256 == sha256_file(video)

    stat = video.stat()
    video.write_bytes(video.read_bytes()[::-1])  # new content, same size
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = scan_videos(tmp_path)
    assert second.video("a").sha256 == first.video("a").sha256 != sha256_file(video)
    assert second.video("a").first_seen == first.video("a").first_seen
    assert second.new_items.to_pylist() == []

    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a touch
    third = scan_videos(tmp_path)
    assert third.video("a").sha256 == sha256_file(video) != first.video("a").sha256
    assert third.video("a").first_seen == first.video("a").first_seen
