"""Every supported family's tiny checkpoint through the real Ray extraction path, into a store that
verifies: at the demo's 8 frames x 224, which then trains `full`, and at another frame count and
size (a few videos: the same code path, in less time).

LLaVA-OneVision (the demo's family) is covered the same way by test_extract.py and the demo. The
LLaVA families read frames at their vision tower's fixed size, so only their frame count varies;
the Qwen-VL families keep any resolution on their patch grid (28 px for Qwen2.5-VL, 32 px for
Qwen3-VL), and 5 frames exercise the processor's padding to whole 2-frame patches.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from featurizer.config import PRESET_DIR, load_preset
from featurizer.store import FeatureStore
from pipelines.dataset.ingest import ingest
from pipelines.extraction.extract import ExtractSummary, extract_catalog
from pipelines.training.run import TrainResult, train_run

Case = tuple[str, int, int]  # (family, frames, resolution)
DEMO_SETTING = (8, 224)
CASES: list[Case] = [
    ("llava_next_video", *DEMO_SETTING),
    ("llava_next_video", 4, 224),
    ("qwen2_5_vl", *DEMO_SETTING),
    ("qwen2_5_vl", 6, 280),
    ("qwen3_vl", *DEMO_SETTING),
    ("qwen3_vl", 5, 256),
]
OTHER_SETTING_VIDEOS = 4


@dataclass
class FamilyRun:
    summary: ExtractSummary
    dataset: Path
    store: Path
    asked: int  # videos the run was asked to extract


@pytest.fixture(scope="module")
def extract_case(
    demo_dataset: Path,
    family_checkpoints: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
    ray_session: None,
) -> Callable[[Case], FamilyRun]:
    """Runs a case's extraction once per module, however many tests read it."""
    done: dict[Case, FamilyRun] = {}

    def run(case: Case) -> FamilyRun:
        if case in done:
            return done[case]
        family, frames, resolution = case
        root = tmp_path_factory.mktemp(f"{family}-{frames}")
        dataset = root / "dataset"
        shutil.copytree(demo_dataset, dataset)
        ingest(dataset)
        config = load_preset(f"tiny-{family}").replace(
            model=str(family_checkpoints[family]), frames=frames, resolution=resolution
        )
        items = None
        if (frames, resolution) != DEMO_SETTING:
            items = sorted(p.stem for p in (dataset / "videos").glob("*.mp4"))
            items = items[:OTHER_SETTING_VIDEOS]
        summary = extract_catalog(
            dataset, root / "store", config, items=items, actors=1, progress=False
        )
        asked = len(items) if items else 12
        done[case] = FamilyRun(summary=summary, dataset=dataset, store=root / "store", asked=asked)
        return done[case]

    return run


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{c[1]}f-{c[2]}px")
def family_run(
    request: pytest.FixtureRequest, extract_case: Callable[[Case], FamilyRun]
) -> FamilyRun:
    return extract_case(request.param)


@pytest.fixture(
    scope="module", params=[c for c in CASES if c[1:] == DEMO_SETTING], ids=lambda c: c[0]
)
def family_training(
    request: pytest.FixtureRequest, extract_case: Callable[[Case], FamilyRun]
) -> TrainResult:
    run = extract_case(request.param)
    return train_run(
        run.dataset, run.store, run.store.parent / "run", "full", epochs=1, progress=False
    )


def test_every_video_is_extracted_into_a_store_that_verifies(family_run: FamilyRun) -> None:
    version = FeatureStore.open(family_run.store, family_run.summary.fingerprint)

    assert (family_run.summary.extracted, family_run.summary.failed) == (family_run.asked, 0)
    assert version.verify().ok


def test_rows_are_L_by_K_by_D_at_the_tapped_hidden_state_indices(family_run: FamilyRun) -> None:
    version = FeatureStore.open(family_run.store, family_run.summary.fingerprint)
    items = sorted(version.index())

    rows = version.read(items[:2])

    assert version.shape_per_item == (6, 64, 64)  # 6 tapped layers, K = 64, the tiny D = 64
    assert version.extractor["layers"] == [0, 4, 8, 12, 16, 20]
    assert rows.shape == (2, 6, 64, 64) and rows.dtype == np.float16
    assert np.isfinite(rows).all()


def test_full_trains_on_the_store(family_training: TrainResult) -> None:
    # every item with a video has its row; the demo's one ID-only item has none
    assert (family_training.n_items, family_training.n_missing_features) == (13, 1)
    assert 0.0 <= family_training.metrics["test"]["overall"]["hr@10"] <= 1.0


def test_extract_cli_refuses_an_unsupported_family_in_one_line_before_any_work(
    tmp_path: Path, demo_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import main

    model = tmp_path / "llava-1.5"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llava"}))

    code = main(["extract", "--dataset", str(demo_dataset), "--store", str(tmp_path / "store"),
                 "--model", str(model)])  # fmt: skip

    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "model_type 'llava'" in err and "qwen3_vl" in err
    assert not (tmp_path / "store").exists()


def test_extract_cli_refuses_a_resolution_off_the_familys_grid_before_any_work(
    tmp_path: Path,
    demo_dataset: Path,
    family_checkpoints: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pipelines.cli import main

    preset = json.loads((PRESET_DIR / "tiny-qwen3_vl.json").read_text())
    preset.update(model=str(family_checkpoints["qwen3_vl"]), resolution=300)
    (tmp_path / "preset.json").write_text(json.dumps(preset))

    code = main(["extract", "--dataset", str(demo_dataset), "--store", str(tmp_path / "store"),
                 "--preset", str(tmp_path / "preset.json")])  # fmt: skip

    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    assert "resolution 300 is not a multiple of 32" in err and "qwen3_vl" in err
    assert not (tmp_path / "store").exists()
