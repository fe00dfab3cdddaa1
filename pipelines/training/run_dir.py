"""The run directory that training owns: how one is recognised, and how a new run replaces an
old one without deleting anything it did not create.

    RUN/linkedout-run.json   the marker: {"kind": "linkedout run", "variant", "created_at"}
    RUN/.linkedout-staging/  a run trained with --fresh, moved over the old run's files only
                             once it has succeeded (inside RUN: nothing is written elsewhere)

A directory is a run when it holds the marker, never because it holds a config.json (a project
folder may have one of its own). A run's own files are the names training, the serving
benchmark and the report write (`is_run_file`); replacing a run removes exactly those, and
anything else a user keeps beside them stays. A run written before the marker existed is
recognised when every entry is a run file and its config.json is a run's; it gets the marker
with the next write into it. One training writes into a run directory at a time.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipelines.errors import PipelineError
from pipelines.serving.runfiles import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    EMBEDDINGS_FILE,
    FIGURES_DIR,
    GATES_FILE,
    ITEM_IDS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    REPORT_FILES,
    SERVING_FILE,
    read_json,
    write_json,
)
from pipelines.training.ray_train import RAY_TRAIN_DIR
from recmodel.variants import variant_names

RUN_MARKER = "linkedout-run.json"
RUN_KIND = "linkedout run"
STAGING_DIR = ".linkedout-staging"
TRAINING_FILES = (
    CONFIG_FILE,
    MODEL_FILE,
    METRICS_FILE,
    EMBEDDINGS_FILE,
    ITEM_IDS_FILE,
    GATES_FILE,
    CHECKPOINT_FILE,
    SERVING_FILE,
    RAY_TRAIN_DIR,
)
_PARTIAL = re.compile(
    r"\.(.+)\.tmp-\d+(-[0-9a-f]+)?"
)  # an atomic write cut short: .<name>.tmp-<pid>[-<id>]


def is_run_file(name: str) -> bool:
    """Whether `name`, an entry of a run directory, is one the project writes there."""
    partial = _PARTIAL.fullmatch(name)
    if partial:
        name = partial.group(1)
    return name in (*TRAINING_FILES, *REPORT_FILES, FIGURES_DIR, RUN_MARKER, STAGING_DIR)


@dataclass(frozen=True)
class RunDir:
    """What an output directory holds, as training sees it."""

    path: Path
    variant: str | None  # the variant of the run it holds; None: absent or empty
    marked: bool  # holds the marker (a run from before the marker does not)


def inspect_run_dir(out: Path) -> RunDir:
    """What `out` is: absent, empty, or a run; a PipelineError naming it when it is something
    else, so that training writes nothing into a directory it did not make."""
    if not out.exists():
        return RunDir(out, None, False)
    if not out.is_dir():
        raise PipelineError(f"{out} is not a directory; train into a new or empty directory")
    names = {p.name for p in out.iterdir()} - {STAGING_DIR}  # a killed run's own leftovers
    if RUN_MARKER in names:
        return RunDir(out, _marker_variant(out / RUN_MARKER), True)
    if all(_PARTIAL.fullmatch(n) and is_run_file(n) for n in names):  # empty, or as good as
        return RunDir(out, None, False)
    foreign = sorted(n for n in names if not is_run_file(n))
    config = _run_config(out / CONFIG_FILE) if CONFIG_FILE in names else None
    if not foreign and config is not None:  # a run written before the marker existed
        return RunDir(out, config["variant"], False)
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        why = f"it holds {shown}"
    elif CONFIG_FILE in names:
        why = f"its {CONFIG_FILE} is not a run's"
    else:
        why = f"it holds run files but no {CONFIG_FILE}"
    raise PipelineError(
        f"{out} is not a run directory ({why}, and no {RUN_MARKER}); train into a new or "
        "empty directory, or into a run directory"
    )


def _marker_variant(marker: Path) -> str:
    value = read_json(marker)
    if not (
        isinstance(value, dict)
        and value.get("kind") == RUN_KIND
        and value.get("variant") in variant_names()
    ):
        raise PipelineError(f"{marker} is not a run marker (kind {RUN_KIND!r} and a variant)")
    return str(value["variant"])


def _run_config(path: Path) -> dict[str, Any] | None:
    """config.json as training writes it (a variant, model and train settings), else None."""
    try:
        value = read_json(path)
    except PipelineError:
        return None
    if (
        isinstance(value, dict)
        and value.get("variant") in variant_names()
        and isinstance(value.get("model"), dict)
        and isinstance(value.get("train"), dict)
    ):
        return value
    return None


def check_replaceable(out: Path) -> None:
    """--fresh replaces runs, never the working directory or a directory that holds it."""
    here, target = Path.cwd().resolve(), out.resolve()
    if target == here or target in here.parents:
        raise PipelineError(
            f"{out} is the working directory or holds it; --fresh never replaces that: "
            "name the run directory from outside it"
        )


def write_marker(run: Path, variant: str) -> None:
    write_json(
        run / RUN_MARKER,
        {
            "kind": RUN_KIND,
            "variant": variant,
            "created_at": datetime.now(timezone.utc).isoformat(),
        },
    )


def start_staging(out: Path, variant: str) -> Path:
    """A new, marked staging area inside `out` (made if absent), a stale one removed first:
    out/STAGING_DIR."""
    staging = out / STAGING_DIR
    discard_staging(out)
    staging.mkdir(parents=True)
    write_marker(staging, variant)
    return staging


def discard_staging(out: Path) -> None:
    """Remove the staging area training left in `out` (a failed or killed --fresh run): only
    one that holds the marker training writes into it first."""
    staging = out / STAGING_DIR
    if not staging.exists() and not staging.is_symlink():
        return
    if staging.is_symlink() or not staging.is_dir():
        raise PipelineError(f"{staging} is not a staging area training made; not removing it")
    if any(staging.iterdir()) and not (staging / RUN_MARKER).is_file():
        raise PipelineError(
            f"{staging} holds files training did not write (no {RUN_MARKER}); not removing "
            "it: move it out of the run directory"
        )
    if (staging / RUN_MARKER).is_file():
        _marker_variant(staging / RUN_MARKER)  # refuses a marker training did not write
    shutil.rmtree(staging)


def undo_failed_start(out: Path, *, fresh: bool, new_run: bool, made_out: bool) -> None:
    """After a run failed: a staged (fresh) run's staging area goes, the old run stays; a new
    run that got no checkpoint to resume from loses the files it wrote; a directory made for
    it goes when nothing else is in it."""
    if not out.is_dir():
        return
    if fresh:
        discard_staging(out)
    elif new_run and not (out / CHECKPOINT_FILE).exists():
        for entry in out.iterdir():
            if entry.name != STAGING_DIR and is_run_file(entry.name):
                _remove_run_file(entry)
    if made_out and not any(out.iterdir()):
        out.rmdir()


def replace_run(out: Path, staging: Path) -> None:
    """Put the finished run in `staging` in place of `out`'s run: the old run's own files go,
    the new ones move in (the marker last), everything else in `out` stays."""
    new = {p.name for p in staging.iterdir()}
    for entry in out.iterdir():
        if entry.name not in (STAGING_DIR, RUN_MARKER) and is_run_file(entry.name):
            _remove_run_file(entry)
    for name in sorted(new - {RUN_MARKER}):
        os.replace(staging / name, out / name)
    os.replace(staging / RUN_MARKER, out / RUN_MARKER)
    staging.rmdir()


def _remove_run_file(path: Path) -> None:
    """Remove one of a run's own entries; of figures/, only the figures the report draws."""
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    elif path.name == FIGURES_DIR:
        from pipelines.report.layout import FIGURE_NAMES

        for name in FIGURE_NAMES:
            (path / f"{name}.png").unlink(missing_ok=True)
        if not any(path.iterdir()):
            path.rmdir()
    else:  # Ray Train's storage: every file in it is Ray's
        shutil.rmtree(path)
