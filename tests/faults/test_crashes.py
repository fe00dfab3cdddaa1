"""`linkedout extract` killed with SIGKILL at random points, several times over one store; then a
rerun that is left alone. After every kill the store verifies and every row published before it
is unchanged (same row, same bytes); the rerun completes; and no video is ever given to the model
again once its commit is published (model calls counted through LINKEDOUT_INVOCATION_LOG, one
log per run).

The kill takes the whole process session: the CLI and the local Ray it started (GCS, raylet,
agents, workers), as a machine losing power or the OOM killer taking the process tree would.
Kill points are seeded: the first trial during start-up, the others after a random number of
model calls plus a random fraction of a second, so they land between calls, rows and publishes
whatever the machine's speed."""

from __future__ import annotations

import hashlib
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from featurizer.config import load_preset
from featurizer.store import FeatureStore
from pipelines.store.status import store_integrity
from tests.faults.conftest import CliProcess, kill_session, wait_for
from tests.worker_hooks import INVOCATION_LOG_ENV

pytestmark = pytest.mark.slow

SEED = 20261121
TRIALS = 3
RUN_TIMEOUT = 300.0


@dataclass
class Published:
    row: int
    sha256: str
    extracted_at: object
    digest: str  # sha256 of the row's float16 bytes


@dataclass
class Trial:
    name: str
    kill_point: str
    killed: bool  # False: the run finished before its kill point
    code: int | None
    invocations: list[str]
    published: dict[str, Published]  # the committed index after the trial
    verify_ok: bool | None  # None: no store version yet
    verify_text: str
    survivors: list[str] = field(default_factory=list)
    stdout: str = ""
    stderr_tail: str = ""


@dataclass
class Crashes:
    dataset: Path
    store: Path
    items: list[str]
    trials: list[Trial]  # the killed ones, then the final rerun
    integrity: list[str]


def _published(store: Path) -> tuple[dict[str, Published], bool | None, str]:
    versions = (
        [p for p in store.iterdir() if (p / "extractor.json").is_file()] if store.is_dir() else []
    )
    if not versions:
        return {}, None, "no store version yet"
    (path,) = versions
    version = FeatureStore.open(store, path.name)
    report = version.verify()
    rows = version.index_table().to_pylist()
    features = version.read([r["item"] for r in rows]) if rows else []
    published = {
        r["item"]: Published(
            r["row"],
            r["source_sha256"],
            r["extracted_at"],
            hashlib.sha256(features[i].tobytes()).hexdigest(),
        )
        for i, r in enumerate(rows)
    }
    return published, report.ok, report.describe()


def _index_key(store: Path) -> int | None:
    """The highest commit in the store's version's index log (0: born empty)."""
    files = [*store.glob("*/index/log/*.parquet"), *store.glob("*/index/checkpoint/*.parquet")]
    found = [int(p.name[:20]) for p in files] if store.is_dir() else []
    return max(found) if found else None


def _run(
    root: Path, argv: list[str], name: str, kill: tuple[str, int, float]
) -> tuple[CliProcess, bool, list[str]]:
    """Run the CLI; `kill` = (when, n, delay): "startup" (after `delay` s), "calls" (`delay` s
    after the n-th model call), "publish" (`delay` s after the run's first index publish) or
    "never"."""
    log = root / f"{name}.invocations"
    store = Path(argv[argv.index("--store") + 1])
    index_before = _index_key(store)
    process = CliProcess(argv, root / "logs", name, **{INVOCATION_LOG_ENV: str(log)})

    def calls() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    when, n, delay = kill
    killed = False
    try:
        if when == "startup":
            deadline = time.monotonic() + delay
            while process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
        elif when == "calls":
            wait_for(
                lambda: process.poll() is not None or len(calls()) >= n,
                RUN_TIMEOUT,
                0.02,
                f"{n} model calls in {name}",
            )
            time.sleep(delay)
        elif when == "publish":
            wait_for(
                lambda: (
                    process.poll() is not None or (_index_key(store) or 0) > (index_before or 0)
                ),
                RUN_TIMEOUT,
                0.02,
                f"an index publish in {name}",
            )
            time.sleep(delay)
        if when != "never" and process.poll() is None:
            process.kill()
            killed = True
        else:
            process.wait(RUN_TIMEOUT)
    except BaseException:
        kill_session(process.sid)
        raise
    return process, killed, calls()


@pytest.fixture(scope="module")
def crashes(
    demo_dataset: Path,
    tiny_model: Path,
    one_prompt_preset: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Crashes]:
    root = tmp_path_factory.mktemp("crashes")
    dataset, store = root / "dataset", root / "store"
    shutil.copytree(demo_dataset, dataset)
    items = sorted(p.stem for p in (dataset / "videos").glob("*.mp4"))
    argv = ["extract", "--dataset", dataset, "--store", store, "--preset", one_prompt_preset]
    rng = random.Random(SEED)
    trials: list[Trial] = []
    sessions: list[int] = []
    try:
        kills: list[tuple[str, int, float]] = [
            ("startup", 0, rng.uniform(0.5, 4.0)),
            ("calls", rng.randint(1, 3), rng.uniform(0.0, 0.6)),
            ("publish", 0, rng.uniform(0.0, 0.3)),
        ]
        assert len(kills) == TRIALS
        for t, kill in enumerate([*kills, ("never", 0, 0.0)]):
            when, n, delay = kill
            point = {
                "startup": f"{delay:.2f} s after start (start-up)",
                "calls": f"{delay:.2f} s after model call {n}",
                "publish": f"{delay:.2f} s after the run's first index publish",
                "never": "none (left to finish)",
            }[when]
            name = "rerun" if when == "never" else f"kill-{t + 1}"
            process, killed, calls = _run(root, argv, name, kill)
            sessions.append(process.sid)
            published, ok, text = _published(store)
            trials.append(
                Trial(
                    name=name,
                    kill_point=point,
                    killed=killed,
                    code=process.poll(),
                    invocations=calls,
                    published=published,
                    verify_ok=ok,
                    verify_text=text,
                    survivors=process.survivors(),
                    stdout=process.stdout,
                    stderr_tail=process.stderr[-2000:],
                )
            )
        integrity = store_integrity(
            dataset, store, load_preset("demo").replace(model=str(tiny_model), prompts=())
        )
        yield Crashes(dataset, store, items, trials, integrity)
    finally:
        for sid in sessions:
            kill_session(sid)


def _lost(before: dict[str, Published], after: dict[str, Published]) -> list[str]:
    return sorted(item for item, row in before.items() if after.get(item) != row)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_store_verifies_and_keeps_what_was_published_after_a_kill(
    crashes: Crashes, trial: int, fault_report
) -> None:
    t = crashes.trials[trial]
    before = crashes.trials[trial - 1].published if trial else {}
    lost = _lost(before, t.published)
    fault_report.record(
        f"SIGKILL extract, trial {trial + 1}: {t.kill_point}",
        survived=t.verify_ok is not False and not lost and not t.survivors,
        lost=len(lost),
        message=(t.verify_text.splitlines()[0] if t.verify_ok is not None else t.verify_text)
        + f"; {len(t.published)} rows published, {len(t.invocations)} model calls in the run",
    )
    assert t.killed, f"{t.name} finished before its kill point: {t.stderr_tail}"
    assert t.verify_ok is not False, t.verify_text
    assert lost == [], f"published rows lost or changed by the kill: {lost}"
    assert t.survivors == [], f"processes outlived the kill: {t.survivors}"


def test_rerun_after_the_kills_completes_with_every_video(crashes: Crashes, fault_report) -> None:
    final = crashes.trials[-1]
    lost = _lost(crashes.trials[-2].published, final.published)
    summary = next((ln for ln in final.stdout.splitlines() if ln.startswith("extracted ")), "")
    fault_report.record(
        "rerun after the SIGKILLs",
        survived=final.code == 0 and set(final.published) == set(crashes.items),
        lost=len(lost) + len(set(crashes.items) - set(final.published)),
        message=summary or final.stderr_tail[-300:],
    )
    assert final.code == 0, final.stderr_tail
    assert set(final.published) == set(crashes.items)
    assert final.verify_ok, final.verify_text
    assert lost == []
    assert crashes.integrity == []
    assert final.survivors == []


def test_every_video_is_given_to_the_model_exactly_once_after_its_commit(
    crashes: Crashes, fault_report
) -> None:
    """A video may be extracted again only while no published commit names it: a run killed
    after the model call but before the publish loses that work; a published one never."""
    again: list[str] = []
    for item in crashes.items:
        committed_in = next(i for i, t in enumerate(crashes.trials) if item in t.published)
        if crashes.trials[committed_in].invocations.count(item) != 1:
            again.append(f"{item}: {crashes.trials[committed_in].invocations.count(item)} calls")
        for later in crashes.trials[committed_in + 1 :]:
            if item in later.invocations:
                again.append(f"{item}: called again in {later.name}")
    calls = sum(len(t.invocations) for t in crashes.trials)
    fault_report.record(
        "no video extracted again after its commit",
        survived=not again,
        message=f"{calls} model calls for {len(crashes.items)} videos over "
        f"{len(crashes.trials)} runs; redone after a commit: {again or 'none'}",
    )
    assert again == []
