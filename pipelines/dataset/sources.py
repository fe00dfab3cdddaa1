"""What interactions.parquet was made from, and whether it changed since: each source file's
stamp (on a local disk its size, mtime and sha256, hashing again only a file whose size or mtime
moved; on an object store its size and ETag, from a HEAD, never its bytes), recorded in the
parquet's metadata by ingest and compared by training before it reads the interactions."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from featurizer.decode import sha256_file
from featurizer.store import Location
from pipelines.dataset.location import dataset_location
from pipelines.errors import PipelineError, one_line

log = logging.getLogger(__name__)

PAIRS = "pairs.csv"
TITLES = "titles.csv"
INTERACTIONS = "interactions.parquet"
SOURCES = (PAIRS, TITLES)
SOURCES_KEY = b"linkedout.sources"  # interactions.parquet metadata: the inputs it was made from


def stamp(path: Location, content: bool = True) -> dict[str, Any] | None:
    """A file's stamp (module docstring), the sha256 only with `content`; None when absent."""
    info = path.stat()
    if info is None:
        return None
    if not path.is_local:
        return {"size": info.size, "e_tag": info.e_tag}
    st = path.path.stat()
    found: dict[str, Any] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if content:
        found["sha256"] = sha256_file(path.path)
    return found


def moved(then: dict[str, Any] | None, path: Location) -> bool:
    """Whether `path` may differ from its stamp `then` (or appeared or vanished): its size or
    mtime moved (local), its size or ETag (object store)."""
    now = stamp(path, content=False)
    if now is None or then is None:
        return (now is None) != (then is None)
    return any(now[key] != then.get(key) for key in now)


def stale_sources(dataset: Path | str) -> list[str]:
    """How the inputs differ from those interactions.parquet was made from, one phrase per
    changed file ("DATASET/pairs.csv changed (content differs)"); empty when they match, when
    there is no interactions.parquet, or when it records no inputs (an older ingest wrote it:
    nothing to compare, said in a warning)."""
    name_ = dataset
    dataset = dataset_location(dataset)
    path = dataset / INTERACTIONS
    if not path.exists():
        return []
    try:
        metadata = _schema(path).metadata or {}
        recorded = json.loads(metadata[SOURCES_KEY]) if SOURCES_KEY in metadata else None
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise PipelineError(
            f"{path} is unreadable ({one_line(exc, 200)}): run `linkedout ingest {name_}` again"
        ) from None
    if not isinstance(recorded, dict):
        log.warning(
            "%s records no source files (an older ingest wrote it): cannot tell whether %s "
            "changed since; run ingest again to record them",
            path,
            PAIRS,
        )
        return []
    changed = []
    for name in SOURCES:
        file, then = dataset / name, recorded.get(name)
        now = file.stat()
        if then is None:
            if now is not None:
                changed.append(f"{file} was added")
        elif now is None:
            changed.append(f"{file} was removed")
        elif moved(then, file) and (
            not file.is_local or sha256_file(file.path) != then.get("sha256")
        ):
            sizes = (
                f"{then['size']} -> {now.size} bytes" if now.size != then["size"] else "same size"
            )
            changed.append(f"{file} changed ({sizes}, content differs)")
    return changed


def _schema(path: Location) -> pa.Schema:
    """A parquet file's schema from its footer (the whole file read on an object store: it is
    one object of interactions)."""
    if path.is_local:
        return pq.read_schema(path.path)
    return pq.read_schema(pa.BufferReader(path.read_bytes()))
