"""Validate a MicroLens-layout dataset and write `interactions.parquet` with the split.

`pairs.csv` (required) and `titles.csv` (optional) are read with the csv module, so ids may
hold quoted commas, pipes, spaces or any Unicode; a UTF-8 byte order mark is accepted, column
names are matched case-insensitively with the usual aliases, and fields are stripped of
surrounding whitespace. Extra columns are ignored.

Fatal problems (missing or empty file, missing column, nothing valid left) raise
`PipelineError`. Bad rows are dropped and reported as `"pairs.csv:LINE: reason"`, LINE being
the 1-based line in the file, header included.

The split is leave-one-out by timestamp per user (ties keep file order): the last interaction
is `test`, the one before `valid`, the rest `train`.

The dataset is a local directory or an S3 prefix (pipelines.dataset.location): the files are
read, and interactions.parquet written, where it is.

interactions.parquet records what it was made from: the size, mtime and sha256 of pairs.csv and
titles.csv, or on S3 their size and ETag (its schema metadata, key `linkedout.sources`). `read_current_interactions`, which
training reads through, compares them with the files on disk (hashing only a file whose size or
mtime moved, as the video catalog does) and stops with one line when either changed: training
does not re-ingest by itself, because ingest owns interactions.parquet (the Dagster
`interactions` asset materializes it), may reject rows and moves the split, and a user must see
that before a run is trained on it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import pyarrow as pa
import pyarrow.parquet as pq

from featurizer.store import Location
from pipelines.dataset.location import VIDEO_SUFFIX, dataset_location, video_pages
from pipelines.dataset.sources import (
    INTERACTIONS,
    PAIRS,
    SOURCES,
    SOURCES_KEY,
    TITLES,
    moved,
    stale_sources,
    stamp,
)
from pipelines.errors import PipelineError, one_line
from pipelines.files import atomic_write

log = logging.getLogger(__name__)

VIDEOS = "videos"
MIN_INTERACTIONS = 3  # one train, one valid, one test

SCHEMA = pa.schema(
    [
        ("user", pa.string()),
        ("item", pa.string()),
        ("timestamp", pa.int64()),
        ("split", pa.string()),  # train | valid | test
    ]
)

PAIRS_COLUMNS = {
    "user": ("user", "user_id", "userid", "uid"),
    "item": ("item", "item_id", "itemid", "video_id", "videoid", "video", "iid"),
    "timestamp": ("timestamp", "time", "ts"),
}
TITLES_COLUMNS = {
    "item": PAIRS_COLUMNS["item"],
    "title": ("title", "video_title", "name"),
}
_INTEGER = re.compile(r"[+-]?\d+")
_INT64 = (-(2**63), 2**63 - 1)


@dataclass
class IngestResult:
    """What `ingest` wrote and what it dropped."""

    path: str  # the interactions.parquet written (a path or an s3:// URL)
    n_users: int
    n_items: int
    n_interactions: int
    n_train: int
    n_valid: int
    n_test: int
    rejected: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"wrote {self.path}: {self.n_interactions} interactions of {self.n_users} users "
            f"on {self.n_items} items ({self.n_train} train, {self.n_valid} valid, "
            f"{self.n_test} test); {len(self.rejected)} rows rejected"
        )


@dataclass
class _Row:
    line: int
    user: str
    item: str
    timestamp: int


def ingest(dataset: Path | str) -> IngestResult:
    """Validate `dataset`'s pairs.csv (and titles.csv) and write interactions.parquet."""
    dataset = dataset_location(dataset)
    pairs_path = dataset / PAIRS
    if not pairs_path.exists():
        raise PipelineError(
            f"{pairs_path} not found: a dataset needs pairs.csv (user,item,timestamp)"
        )
    rejected: list[tuple[str, int, str]] = []  # (file, line, reason)
    sources = {name: stamp(dataset / name) for name in SOURCES}

    known_items: set[str] | None = None
    if (dataset / TITLES).exists():
        titles, title_rejections = _parse_titles(dataset / TITLES)
        rejected += [(TITLES, line, reason) for line, reason in title_rejections]
        known_items = set(titles) | _video_items(dataset)

    rows: list[_Row] = []
    first_line: dict[tuple[str, str, int], int] = {}
    for line, record, names in _records(pairs_path, PAIRS_COLUMNS):
        if isinstance(record, str):
            rejected.append((PAIRS, line, record))
            continue
        user, item, ts = record["user"], record["item"], record["timestamp"]
        if not user:
            reason = f"column {names['user']!r} is empty"
        elif not item:
            reason = f"column {names['item']!r} is empty"
        elif not _INTEGER.fullmatch(ts) or not _INT64[0] <= int(ts) <= _INT64[1]:
            reason = f"column {names['timestamp']!r} is not an integer: {ts!r}"
        elif known_items is not None and item not in known_items:
            reason = f"unknown item {item!r} (not in {TITLES} nor {VIDEOS}/)"
        elif (user, item, int(ts)) in first_line:
            reason = f"duplicate of line {first_line[(user, item, int(ts))]}"
        else:
            first_line[(user, item, int(ts))] = line
            rows.append(_Row(line, user, item, int(ts)))
            continue
        rejected.append((PAIRS, line, reason))

    by_user: dict[str, list[_Row]] = {}
    for row in rows:
        by_user.setdefault(row.user, []).append(row)
    for user, user_rows in list(by_user.items()):
        if len(user_rows) < MIN_INTERACTIONS:
            reason = (
                f"user {user} has {len(user_rows)} interaction{'s' * (len(user_rows) != 1)}; "
                f"at least {MIN_INTERACTIONS} are needed for a train/valid/test split"
            )
            rejected += [(PAIRS, row.line, reason) for row in user_rows]
            del by_user[user]

    messages = [f"{name}:{line}: {reason}" for name, line, reason in sorted(rejected)]
    if not by_user:
        first = f"; first: {messages[0]}" if messages else ""
        raise PipelineError(f"{pairs_path}: no valid rows left ({len(messages)} rejected{first})")

    columns: dict[str, list] = {name: [] for name in SCHEMA.names}
    for user_rows in by_user.values():
        user_rows.sort(key=lambda r: (r.timestamp, r.line))
        n = len(user_rows)
        for k, row in enumerate(user_rows):
            columns["user"].append(row.user)
            columns["item"].append(row.item)
            columns["timestamp"].append(row.timestamp)
            columns["split"].append("test" if k == n - 1 else "valid" if k == n - 2 else "train")
    for name, then in sources.items():
        if moved(then, dataset / name):
            raise PipelineError(
                f"{dataset / name} changed while it was being ingested: run ingest again"
            )
    table = pa.table(columns, schema=SCHEMA).replace_schema_metadata(
        {SOURCES_KEY: json.dumps(sources, sort_keys=True).encode()}
    )
    out = dataset / INTERACTIONS
    if out.is_local:
        atomic_write(out.path, lambda tmp: pq.write_table(table, tmp))  # readers see old or new
    else:  # an object appears whole when its PUT returns
        sink = io.BytesIO()
        pq.write_table(table, sink)
        out.write_bytes(sink.getvalue())

    n_users = len(by_user)
    return IngestResult(
        path=out.url,
        n_users=n_users,
        n_items=len(set(columns["item"])),
        n_interactions=table.num_rows,
        n_train=table.num_rows - 2 * n_users,
        n_valid=n_users,
        n_test=n_users,
        rejected=messages,
    )


def read_titles(dataset: Path | str) -> dict[str, str]:
    """item -> title from `titles.csv`; empty when there is none. Bad rows are skipped."""
    path = dataset_location(dataset) / TITLES
    if not path.exists():
        return {}
    return _parse_titles(path)[0]


def read_interactions(dataset: Path | str) -> pa.Table:
    """The table `ingest` wrote: user, item, timestamp, split."""
    path = dataset_location(dataset) / INTERACTIONS
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PipelineError(f"{path} not found: run `linkedout ingest {dataset}` first") from None
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (OSError, pa.ArrowException) as exc:
        raise PipelineError(
            f"{path} is unreadable ({one_line(exc, 200)}): run `linkedout ingest {dataset}` again"
        ) from None
    missing = [name for name in SCHEMA.names if name not in table.column_names]
    if missing:
        raise PipelineError(
            f"{path}: missing column {missing[0]!r}: run `linkedout ingest {dataset}` again"
        )
    return table.select(SCHEMA.names)


def read_current_interactions(dataset: Path | str) -> pa.Table:
    """read_interactions, refused (PipelineError, one line) when pairs.csv or titles.csv changed
    after interactions.parquet was written (see the module docstring)."""
    changed = stale_sources(dataset)
    if changed:
        raise PipelineError(
            f"{changed[0]} after {dataset_location(dataset) / INTERACTIONS} was written: run "
            f"`linkedout ingest {dataset}` again"
        )
    return read_interactions(dataset)


def _parse_titles(path: Location) -> tuple[dict[str, str], list[tuple[int, str]]]:
    titles: dict[str, str] = {}
    lines: dict[str, int] = {}
    rejected: list[tuple[int, str]] = []
    for line, record, names in _records(path, TITLES_COLUMNS):
        if isinstance(record, str):
            rejected.append((line, record))
        elif not record["item"]:
            rejected.append((line, f"column {names['item']!r} is empty"))
        elif record["item"] in titles:
            first = lines[record["item"]]
            rejected.append((line, f"item {record['item']!r} already has a title on line {first}"))
        else:
            titles[record["item"]] = record["title"]
            lines[record["item"]] = line
    return titles, rejected


def _open_text(path: Location) -> TextIO:
    """A CSV file as text: streamed from a local disk; an object store's read whole."""
    if path.is_local:
        return path.path.open(newline="", encoding="utf-8-sig")
    return io.TextIOWrapper(io.BytesIO(path.read_bytes()), newline="", encoding="utf-8-sig")


def _records(
    path: Location, columns: dict[str, tuple[str, ...]]
) -> Iterator[tuple[int, dict[str, str] | str, dict[str, str]]]:
    """(line, record or rejection reason, canonical -> header name) per non-blank row."""
    if not path.exists():
        raise PipelineError(f"{path} not found")
    reader = None
    try:
        with _open_text(path) as f:
            reader = csv.reader(f)
            header = next(reader, None)
            while header is not None and not any(h.strip() for h in header):
                header = next(reader, None)  # leading blank lines
            if header is None:
                raise PipelineError(f"{path} is empty: expected a header line")
            index, names = _header(path, header, columns)
            width = len(header)
            line = reader.line_num + 1  # where the next record starts
            for fields in reader:
                this, line = line, reader.line_num + 1
                if not any(value.strip() for value in fields):
                    continue  # blank line
                if len(fields) != width:
                    yield this, f"expected {width} fields, found {len(fields)}", names
                    continue
                yield this, {key: fields[i].strip() for key, i in index.items()}, names
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except csv.Error as exc:
        where = f"{path}:{reader.line_num}" if reader is not None else str(path)
        raise PipelineError(f"{where}: unreadable CSV: {exc}") from exc


def _header(
    path: Location, header: list[str], columns: dict[str, tuple[str, ...]]
) -> tuple[dict[str, int], dict[str, str]]:
    """canonical column -> field index, and canonical column -> the header's own name."""
    index: dict[str, int] = {}
    names: dict[str, str] = {}
    for i, raw in enumerate(header):
        name = raw.strip().lower()
        for key, aliases in columns.items():
            if name in aliases:
                if key in index:
                    raise PipelineError(
                        f"{path}: columns {names[key]!r} and {raw.strip()!r} both name the {key}"
                    )
                index[key], names[key] = i, raw.strip()
    for key, aliases in columns.items():
        if key not in index:
            found = ",".join(h.strip() for h in header)
            raise PipelineError(
                f"{path}: missing required column {key!r} (accepted names: "
                f"{', '.join(aliases)}; header is {found!r})"
            )
    return index, names


def _video_items(dataset: Location) -> set[str]:
    if dataset.is_local:  # files only, as the catalog counts them
        videos = dataset.path / VIDEOS
        if not videos.is_dir():
            return set()
        return {p.stem for p in videos.iterdir() if p.suffix == VIDEO_SUFFIX and p.is_file()}
    return {item for page in video_pages(dataset) for item in page.column("item").to_pylist()}
