"""Bad video files and hostile item ids through one real extraction (Ray Data decode tasks, the
tiny model in an actor pool, the Zarr store): every decodable file becomes one committed row,
extracted once; every other file becomes one failure row, one line naming the file; nothing is
read or written outside the dataset and the store.

The tiny checkpoint has random weights: its features carry no world knowledge; only the
mechanics are tested here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from featurizer.decode import sha256_file
from featurizer.store import FeatureStore
from pipelines.extraction.extract import ExtractSummary, extract_catalog
from tests.faults import media
from tests.faults.conftest import REPO, assert_one_line_error, run_cli, tree_snapshot
from tests.worker_hooks import INVOCATION_LOG_ENV

pytestmark = pytest.mark.slow

IS_ROOT = os.geteuid() == 0

# item -> what a user should be told (a substring of the failure row)
UNDECODABLE = {
    "zero_bytes": "empty file (0 bytes)",
    "truncated_mid_stream": "truncated:",
    "truncated_no_index": "Invalid data found when processing input",
    "random_bytes": "Invalid data found when processing input",
    "audio_only": "no video stream (streams: audio)",
    "directory_not_file": "Is a directory",
    "dangling_symlink": "No such file or directory",
    "symlink_outside": "outside the dataset: not read",
}
if not IS_ROOT:  # root reads a mode-000 file: then the case is skipped (see its test)
    UNDECODABLE["no_read_permission"] = "Permission denied"
DECODABLE = [
    "v0001",
    "vidéo_ü_名前",  # non-ASCII
    "a,b",  # comma
    "a|b",  # pipe
    "a b",  # space
    "one_frame",
    "one_4k_frame",
    "variable_frame_rate",
    "symlink_inside",
]
CLIMBING_IDS = ["../../etc/passwd", "a/b", "..", "../outside/secret"]


@dataclass
class BadRun:
    root: Path
    dataset: Path
    store: Path
    summary: ExtractSummary
    index: dict[str, tuple[int, str]]  # item -> (row, sha256)
    failures: dict[str, tuple[str, str]]  # item -> (stage, error)
    invocations: list[str]
    verify_ok: bool
    verify_text: str
    secret_sha: str
    outside_before: dict
    outside_after: dict
    dataset_before: dict
    dataset_after: dict


def _make_dataset(root: Path, demo: Path) -> tuple[Path, str]:
    dataset, videos, outside = root / "dataset", root / "dataset" / "videos", root / "outside"
    videos.mkdir(parents=True)
    outside.mkdir()
    demo_videos = sorted((demo / "videos").glob("*.mp4"))
    shutil.copyfile(demo_videos[0], videos / "v0001.mp4")
    for name, source in zip(DECODABLE[1:5], demo_videos[1:5], strict=True):
        shutil.copyfile(source, videos / f"{name}.mp4")
    media.write_video(videos / "one_frame.mp4", media.gradient_frames(1, 64, 64))
    media.write_video(videos / "one_4k_frame.mp4", media.gradient_frames(1, 2160, 3840))
    media.write_video(
        videos / "variable_frame_rate.mp4",
        media.gradient_frames(12, 64, 64),
        pts_ms=[0, 10, 20, 200, 210, 900, 1000, 1001, 1500, 2600, 2610, 4000],
    )
    (videos / "symlink_inside.mp4").symlink_to("v0001.mp4")

    (videos / "zero_bytes.mp4").write_bytes(b"")
    media.truncate(
        media.write_video(
            videos / "truncated_mid_stream.mp4", media.gradient_frames(40, 64, 64), faststart=True
        ),
        0.6,
    )
    shutil.copyfile(demo_videos[5], videos / "truncated_no_index.mp4")
    media.truncate(videos / "truncated_no_index.mp4", 0.5)
    rng = np.random.default_rng(0)
    (videos / "random_bytes.mp4").write_bytes(rng.integers(0, 256, 4096, np.uint8).tobytes())
    media.write_audio_only(videos / "audio_only.mp4")
    (videos / "directory_not_file.mp4").mkdir()
    (videos / "dangling_symlink.mp4").symlink_to("gone.mp4")
    secret = media.write_video(outside / "secret.mp4", media.gradient_frames(16, 64, 64))
    (videos / "symlink_outside.mp4").symlink_to(Path("..", "..", "outside", "secret.mp4"))
    if not IS_ROOT:
        shutil.copyfile(demo_videos[6], videos / "no_read_permission.mp4")
        (videos / "no_read_permission.mp4").chmod(0)

    # titles with hostile ids and text: ids are opaque strings, titles only prompt text
    shutil.copyfile(demo / "pairs.csv", dataset / "pairs.csv")
    lines = ["item,title"]
    lines += [f'"{item}","a title, with a comma | and a pipe"' for item in DECODABLE]
    lines += [f'"{item}",climbing title {i}' for i, item in enumerate(CLIMBING_IDS)]
    (dataset / "titles.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dataset, sha256_file(secret)


@pytest.fixture(scope="module")
def bad_run(
    demo_dataset: Path, tmp_path_factory: pytest.TempPathFactory, ray_local: None, extract_config
) -> BadRun:
    root = tmp_path_factory.mktemp("bad-videos")
    dataset, secret_sha = _make_dataset(root, demo_dataset)
    store = root / "store"
    log = root / "invocations.log"
    outside_before = tree_snapshot(root, exclude=[dataset, store, log])
    dataset_before = tree_snapshot(dataset)
    os.environ[INVOCATION_LOG_ENV] = str(log)
    try:
        summary = extract_catalog(dataset, store, extract_config, progress=False)
    finally:
        del os.environ[INVOCATION_LOG_ENV]
    version = FeatureStore.open(store, summary.fingerprint)
    report = version.verify()
    return BadRun(
        root=root,
        dataset=dataset,
        store=store,
        summary=summary,
        index={
            r["item"]: (r["row"], r["source_sha256"]) for r in version.index_table().to_pylist()
        },
        failures={
            r["item"]: (r["stage"], r["error"]) for r in version.failures_table().to_pylist()
        },
        invocations=log.read_text(encoding="utf-8").splitlines() if log.exists() else [],
        verify_ok=report.ok,
        verify_text=report.describe(),
        secret_sha=secret_sha,
        outside_before=outside_before,
        outside_after=tree_snapshot(root, exclude=[dataset, store, log]),
        dataset_before=dataset_before,
        dataset_after=tree_snapshot(dataset),
    )


@pytest.mark.parametrize("item", sorted(UNDECODABLE))
def test_undecodable_file_becomes_one_failure_row_naming_it(
    bad_run: BadRun, item: str, fault_report
) -> None:
    stage, error = bad_run.failures.get(item, ("", ""))
    fault_report.record(
        f"video: {item}", survived=bool(error) and item not in bad_run.index, message=error
    )
    assert item not in bad_run.index
    assert stage == "decode"
    assert error.startswith(f"{item}.mp4: ")
    assert UNDECODABLE[item] in error
    assert "\n" not in error and "Traceback" not in error
    assert f"failed {item} (decode): {error}" in bad_run.summary.describe()
    assert item not in bad_run.invocations  # the model never saw it


@pytest.mark.parametrize("item", DECODABLE)
def test_decodable_file_is_extracted_exactly_once_into_a_verified_row(
    bad_run: BadRun, item: str, fault_report
) -> None:
    stored = item in bad_run.index
    fault_report.record(
        f"video: {item}",
        survived=stored and bad_run.verify_ok,
        lost=0 if stored else 1,
        message=bad_run.summary.describe().splitlines()[0],
    )
    assert stored, bad_run.failures.get(item)
    assert bad_run.invocations.count(item) == 1
    assert bad_run.verify_ok, bad_run.verify_text
    features = FeatureStore.open(bad_run.store, bad_run.summary.fingerprint).read([item])
    assert np.isfinite(features).all()


def test_summary_counts_every_file(bad_run: BadRun) -> None:
    s = bad_run.summary
    assert (s.extracted, s.failed) == (len(DECODABLE), len(UNDECODABLE))
    assert set(bad_run.index) == set(DECODABLE)
    assert set(bad_run.failures) == set(UNDECODABLE)


def test_symlink_outside_the_dataset_is_never_read(bad_run: BadRun, fault_report) -> None:
    catalog = (bad_run.dataset / "catalog.parquet").read_bytes()
    read = bad_run.secret_sha.encode() in catalog or any(
        sha == bad_run.secret_sha for _, sha in bad_run.index.values()
    )
    fault_report.record(
        "video: symlink to a file outside the dataset (not read)",
        survived=not read,
        message=bad_run.failures.get("symlink_outside", ("", ""))[1],
    )
    assert not read  # neither hashed into the catalog nor extracted


def test_four_k_frame_decodes_straight_to_224_in_little_memory(
    bad_run: BadRun, fault_report
) -> None:
    """decord resizes while decoding: a 3840x2160 frame never exists at full size in RGB."""
    # VmHWM (this process image's peak RSS) rather than ru_maxrss, which a child inherits
    # from the forking parent (here pytest, well over a GB)
    code = (
        "import json, sys; from pathlib import Path\n"
        "import decord; from featurizer.decode import decode_video\n"
        "def peak():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        "            return int(line.split()[1]) // 1024\n"
        "before = peak()\n"
        "x = decode_video(Path(sys.argv[1]), 8, 224)\n"
        "after = peak()\n"
        "print(json.dumps({'shape': list(x.shape), 'peak_mb': after, 'grew_mb': after - before}))\n"
    )
    video = bad_run.dataset / "videos" / "one_4k_frame.mp4"
    out = subprocess.run(
        [sys.executable, "-c", code, str(video)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    fault_report.record(
        "video: one 3840x2160 frame (decode memory)",
        survived=measured["grew_mb"] < 400,
        message=f"decoded to {tuple(measured['shape'])}; peak RSS of the decoding process "
        f"{measured['peak_mb']} MB (+{measured['grew_mb']} MB while decoding)",
    )
    assert measured["shape"] == [8, 224, 224, 3]
    assert measured["grew_mb"] < 400


def test_variable_frame_rate_yields_frames_in_temporal_order(bad_run: BadRun) -> None:
    from featurizer.decode import decode_video

    frames = decode_video(bad_run.dataset / "videos" / "variable_frame_rate.mp4", 8, 224)
    green = [float(f[..., 1].mean()) for f in frames]
    assert frames.shape == (8, 224, 224, 3)
    assert green == sorted(green)  # sampled by frame index, in order (not by timestamp)


def test_nothing_outside_dataset_and_store_changed(bad_run: BadRun, fault_report) -> None:
    """Climbing ids in titles.csv (`../../etc/passwd`, `a/b`, `..`) and a symlink out of the
    dataset: no file was created or touched outside the dataset and the store, and inside the
    dataset only the catalog was written."""
    changed_outside = {
        k: v for k, v in bad_run.outside_after.items() if bad_run.outside_before.get(k) != v
    }
    changed_outside.update(
        {k: None for k in bad_run.outside_before if k not in bad_run.outside_after}
    )
    changed_dataset = {
        k
        for k in set(bad_run.dataset_before) | set(bad_run.dataset_after)
        if bad_run.dataset_before.get(k) != bad_run.dataset_after.get(k)
    }
    fault_report.record(
        "item ids climbing out of their folder (titles.csv: ../../etc/passwd, a/b, ..)",
        survived=not changed_outside and changed_dataset <= {"catalog.parquet"},
        message=f"nothing written outside the dataset and store (dataset: {sorted(changed_dataset)})",
    )
    assert changed_outside == {}
    assert changed_dataset <= {"catalog.parquet"}
    for item in CLIMBING_IDS:
        assert item not in bad_run.index and item not in bad_run.failures


def test_items_option_refuses_a_climbing_id_in_one_line(
    bad_run: BadRun, one_prompt_preset: Path, fault_report
) -> None:
    before = tree_snapshot(bad_run.root, exclude=[bad_run.dataset])
    result = run_cli(
        ["extract", "--dataset", bad_run.dataset, "--store", bad_run.store]
        + ["--preset", one_prompt_preset, "--items", "../x,a/b"]
    )
    line = result.error_line
    fault_report.record(
        "--items ../x,a/b (climbing ids on the command line)",
        survived=result.code == 1 and "'../x'" in line,
        message=line,
    )
    assert_one_line_error(result, "'../x'", "'a/b'", "no video for item(s)")
    assert tree_snapshot(bad_run.root, exclude=[bad_run.dataset]) == before


def test_items_option_takes_quoted_ids_with_commas(
    bad_run: BadRun, one_prompt_preset: Path, fault_report
) -> None:
    """`--items` is one CSV record: "a,b" (quoted) is the item a,b; nothing left to extract."""
    result = run_cli(
        ["extract", "--dataset", bad_run.dataset, "--store", bad_run.store]
        + ["--preset", one_prompt_preset, "--items", '"a,b",a|b,a b']
    )
    line = result.stdout.strip().splitlines()[0] if result.stdout.strip() else result.stderr
    fault_report.record(
        '--items "a,b",a|b,a b (ids with comma, pipe, space)',
        survived=result.code == 0,
        message=line,
    )
    assert result.code == 0, result.stderr
    assert line.startswith("extracted 0, skipped 3 (already stored), failed 0")


@pytest.mark.skipif(not IS_ROOT, reason="runs as non-root: the mode-000 file is in bad_run")
def test_no_read_permission_cannot_be_tested_as_root(fault_report) -> None:
    fault_report.record(
        "video: no read permission (chmod 000)",
        survived=True,
        message="SKIPPED as root: root reads mode-000 files; the same path (a file the "
        "catalog cannot open) is covered by directory_not_file",
    )
    pytest.skip("running as root, which reads files whatever their mode bits")
