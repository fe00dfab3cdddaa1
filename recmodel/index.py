"""Approximate nearest-neighbour search over the item vectors, with faiss.

A query's scores are dot products (recmodel.ranker), so every index here searches by maximum
inner product. The kind follows the catalog size and a memory budget (choose_spec):

    exact  Flat                   n < exact_max_items: a scan is already fast
    hnsw   HNSW{M},Flat           up to hnsw_max_items, while vectors + graph (4d + ~9M bytes
                                  an item) fit the budget: no training, high recall
    ivf    IVF{nlist}_HNSW32,C    beyond: inverted lists of about ivf_list_size items over
                                  quantized codes C, the richest that fits the budget (fp16,
                                  int8, or product quantization), so 10M items stay in RAM

Search parameters (efSearch, nprobe) are raised at build time until recall@k on held-out queries
reaches a target (tune). Recall counts a returned item as correct when its exact score reaches the
k-th exact score (ann-benchmarks' rule), so ties in the catalog do not count as misses.

faiss rather than usearch: one well-kept library holds all three kinds, the IVF's scalar and
product quantizers included (usearch offers HNSW only, whose build at 10M items takes hours
on two cores), and it ships wheels for every Python this project supports.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import xxhash

from recmodel.runfiles import atomic_write

INDEX_FORMAT = 1
METRIC = "inner_product"
HNSW_LADDER = (16, 32, 64, 128, 256, 512)  # efSearch values tried, cheapest first
NPROBE_LADDER = (1, 2, 4, 8, 16, 32, 64, 128, 256)
ID_BYTES = 8  # an IVF list stores each item's int64 row beside its code


class StaleIndexError(ValueError):
    """An index whose record does not match the files beside it."""


@dataclass(frozen=True)
class IndexSettings:
    """How an index is chosen and tuned; memory is bounded by these, not by the catalog."""

    exact_max_items: int = 50_000
    hnsw_max_items: int = 1_000_000
    memory_budget_bytes: int = 1 << 30  # what the index may hold in RAM
    hnsw_m: int = 32
    ef_construction: int = 40
    ivf_list_size: int = 1024  # items per inverted list, on average
    ivf_train_per_list: int = 40  # k-means points per list (faiss warns below 39)
    target_recall: float = 0.95  # recall@10 the search parameters are tuned to
    add_chunk_rows: int = 1 << 16  # vectors copied to float32 and added at a time

    def __post_init__(self) -> None:
        if not 0.0 < self.target_recall <= 1.0:
            raise ValueError(f"target_recall must be in (0, 1], got {self.target_recall}")
        for name in ("exact_max_items", "memory_budget_bytes", "hnsw_m", "ivf_list_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class IndexSpec:
    """What to build: the kind, faiss's factory string, and the bytes it will hold."""

    kind: str  # exact | hnsw | ivf
    factory: str
    n_items: int
    dim: int
    expected_bytes: int
    ef_construction: int = 0  # hnsw only
    nlist: int = 0  # ivf only: inverted lists
    train_rows: int = 0  # ivf only: k-means sample size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_spec(n: int, d: int, settings: IndexSettings = IndexSettings()) -> IndexSpec:
    """The index kind and parameters for n items of width d (see the module docstring)."""
    budget = settings.memory_budget_bytes
    flat_bytes = n * d * 4
    if n < settings.exact_max_items:
        return IndexSpec("exact", "Flat", n, d, flat_bytes)
    m = settings.hnsw_m
    hnsw_bytes = n * (4 * d + 9 * m + 16)  # vectors, level-0 links (2M ints), upper levels
    if n <= settings.hnsw_max_items and hnsw_bytes <= budget:
        return IndexSpec(
            "hnsw", f"HNSW{m},Flat", n, d, hnsw_bytes, ef_construction=settings.ef_construction
        )
    nlist = _power_of_two(n / settings.ivf_list_size)
    per_item = budget / n - ID_BYTES
    if per_item >= 2 * d:
        codes, code_bytes = "SQfp16", 2 * d
    elif per_item >= d:
        codes, code_bytes = "SQ8", d
    else:
        fitting = [c for c in range(1, d + 1) if d % c == 0 and c <= per_item]  # PQ bytes
        if not fitting or fitting[-1] < 4:
            need = n * (4 + ID_BYTES)
            raise ValueError(
                f"{n:,} items do not fit an index memory budget of {budget:,} bytes "
                f"(at least {need:,} needed): raise memory_budget_bytes"
            )
        code_bytes = fitting[-1]
        codes = f"PQ{code_bytes}"
    train = min(n, settings.ivf_train_per_list * nlist)
    return IndexSpec(
        "ivf",
        f"IVF{nlist}_HNSW32,{codes}",
        n,
        d,
        n * (code_bytes + ID_BYTES) + nlist * d * 4 * 2,
        nlist=nlist,
        train_rows=train,
    )


def _power_of_two(x: float) -> int:
    return int(2 ** max(4, round(math.log2(max(x, 1.0)))))


# ---------------------------------------------------------------------------------------------
# Building and searching


class ItemIndex:
    """A faiss index over the item vectors with its search parameters; ids are catalog rows."""

    def __init__(self, index: faiss.Index, spec: IndexSpec, search: dict[str, int]) -> None:
        self.index = index
        self.spec = spec
        self.search_params: dict[str, int] = {}
        self.set_search(search)

    def set_search(self, search: dict[str, int]) -> None:
        space = faiss.ParameterSpace()
        for name, value in search.items():
            space.set_index_parameter(self.index, name, int(value))
        self.search_params = dict(search)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries (Q, d) float32 -> scores (Q, k), rows (Q, k); row -1 where fewer were found."""
        k = max(1, min(k, self.index.ntotal))
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


class ExactSearch:
    """Every vector scanned (faiss's blocked inner products: memory bounded for any number of
    queries); the vectors are read where they lie, a memory map included, not copied."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors  # (N, d) float32, C-contiguous

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = max(1, min(k, len(self.vectors)))
        q = np.ascontiguousarray(queries, dtype=np.float32)
        return faiss.knn(q, self.vectors, k, metric=faiss.METRIC_INNER_PRODUCT)


Searcher = ItemIndex | ExactSearch


def build(
    vectors: np.ndarray,
    spec: IndexSpec,
    settings: IndexSettings = IndexSettings(),
    seed: int = 0,
    on_stage: Callable[[str, int, float], None] | None = None,
) -> ItemIndex:
    """The index of `spec` over vectors (N, d) float32, a memory map included: the IVF trains
    on a sample, then every kind is filled a chunk at a time, so the build holds the index
    and one chunk. on_stage(stage, rows, seconds) hears of each stage as it ends."""
    n, d = vectors.shape
    index = faiss.index_factory(d, spec.factory, faiss.METRIC_INNER_PRODUCT)
    if spec.kind == "hnsw":
        index.hnsw.efConstruction = spec.ef_construction
    if spec.kind == "ivf":
        ivf = faiss.extract_index_ivf(index)
        # lists from Euclidean k-means: k-means by inner product lets long vectors' centroids
        # swallow whole lists when the item vectors' norms differ
        ivf.clustering_index = faiss.IndexFlatL2(d)
        ivf.cp.niter = 10
        rows = np.sort(np.random.default_rng(seed).choice(n, spec.train_rows, replace=False))
        t0 = time.perf_counter()
        index.train(np.ascontiguousarray(vectors[rows], dtype=np.float32))
        if on_stage:
            on_stage("train", len(rows), time.perf_counter() - t0)
    t0 = time.perf_counter()
    for start in range(0, n, settings.add_chunk_rows):
        chunk = vectors[start : start + settings.add_chunk_rows]
        index.add(np.ascontiguousarray(chunk, dtype=np.float32))
    if on_stage:
        on_stage("add", n, time.perf_counter() - t0)
    return ItemIndex(index, spec, default_search(spec))


def default_search(spec: IndexSpec) -> dict[str, int]:
    if spec.kind == "hnsw":
        return {"efSearch": 64}
    if spec.kind == "ivf":
        return {"nprobe": 16, "quantizer_efSearch": 64}
    return {}


def ladder(spec: IndexSpec) -> list[dict[str, int]]:
    """Search parameters to try, cheapest first."""
    if spec.kind == "hnsw":
        return [{"efSearch": ef} for ef in HNSW_LADDER]
    if spec.kind == "ivf":
        return [
            {"nprobe": p, "quantizer_efSearch": max(64, 2 * p)}
            for p in NPROBE_LADDER
            if p <= spec.nlist
        ]
    return [{}]


def tune(
    index: ItemIndex,
    vectors: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    target: float,
    k: int = 10,
) -> float:
    """Set the cheapest search parameters whose recall@k on `queries` reaches `target` (the
    most expensive tried where none does); truth: (Q,) each query's k-th exact score.
    Returns that recall."""
    found = 0.0
    for params in ladder(index.spec):
        index.set_search(params)
        _, rows = index.search(queries, k)
        found = recall_at_k(vectors, queries, rows, truth)
        if found >= target:
            break
    return found


def kth_scores(exact: ExactSearch, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """(Q,) the k-th best exact score of each query: the bar recall_at_k measures against."""
    scores, _ = exact.search(queries, k)
    return scores[:, -1]


def recall_at_k(
    vectors: np.ndarray, queries: np.ndarray, rows: np.ndarray, kth: np.ndarray
) -> float:
    """Share of the k slots a search filled with an item whose exact score reaches the k-th
    exact score; rows (Q, k) from the search, -1 for an empty slot."""
    q, k = rows.shape
    hit = 0
    for i in range(q):
        found = rows[i][rows[i] >= 0]
        if len(found):
            exact = np.asarray(vectors[np.sort(found)], dtype=np.float32) @ queries[i]
            hit += int(np.sum(exact >= kth[i] - 1e-5 * max(1.0, abs(float(kth[i])))))
    return hit / (q * k) if q else 1.0


@contextlib.contextmanager
def faiss_threads(n: int) -> Iterator[None]:
    """faiss's OpenMP threads set to n for the block (faiss keeps its own OpenMP runtime)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# Files: the index beside the vectors, and a record of what it was built from


def file_checksum(path: Path, block: int = 16 << 20) -> str:
    """xxh3-128 of a file's bytes, read a block at a time."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class IndexRecord:
    """The JSON written beside an index: what it is, what it was built from, how it measured."""

    spec: IndexSpec
    search: dict[str, int]
    vectors_file: str
    vectors_checksum: str
    index_file: str
    index_checksum: str
    index_bytes: int
    build_seconds: float
    built_at: str
    settings: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)  # recall, latencies (the caller's)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["format"] = INDEX_FORMAT
        out["metric"] = METRIC
        return out

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> IndexRecord:
        if value.get("format") != INDEX_FORMAT:
            raise ValueError(f"unsupported index format {value.get('format')!r}")
        fields = {k: v for k, v in value.items() if k not in ("format", "metric")}
        fields["spec"] = IndexSpec(**fields["spec"])
        return cls(**fields)


def write_index(index: ItemIndex, path: Path) -> tuple[str, int]:
    """Write the index file whole (runfiles.atomic_write); returns its checksum and size."""
    written: dict[str, Any] = {}

    def write(tmp: Path) -> None:
        faiss.write_index(index.index, str(tmp))
        written.update(checksum=file_checksum(tmp), size=tmp.stat().st_size)

    atomic_write(Path(path), write)
    return written["checksum"], written["size"]


def read_record(path: Path) -> IndexRecord:
    try:
        return IndexRecord.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path} is not an index record: {exc}") from None


def open_index(
    record_path: Path, vectors_path: Path, vectors_checksum: str | None = None
) -> ItemIndex:
    """The index a record describes, refused (StaleIndexError, one line) unless it was built
    from exactly the vectors at vectors_path and its file is the one the record names."""
    record_path, vectors_path = Path(record_path), Path(vectors_path)
    record = read_record(record_path)
    index_path = record_path.with_name(record.index_file)
    rebuild = f"rebuild it with `linkedout index {record_path.parent}`"
    if vectors_checksum is None:
        vectors_checksum = file_checksum(vectors_path)
    if record.vectors_checksum != vectors_checksum:
        raise StaleIndexError(
            f"{index_path} was built from other vectors than {vectors_path} (xxh3 "
            f"{record.vectors_checksum[:12]} recorded, {vectors_checksum[:12]} now): {rebuild}"
        )
    if not index_path.is_file():
        raise StaleIndexError(f"{index_path} is missing beside its record {record_path}: {rebuild}")
    if file_checksum(index_path) != record.index_checksum:
        raise StaleIndexError(
            f"{index_path} is not the index its record {record_path.name} describes "
            f"(checksum differs): {rebuild}"
        )
    index = faiss.read_index(str(index_path))
    if index.ntotal != record.spec.n_items or index.d != record.spec.dim:
        raise StaleIndexError(
            f"{index_path} holds {index.ntotal} vectors of width {index.d}, its record says "
            f"{record.spec.n_items} of width {record.spec.dim}: {rebuild}"
        )
    return ItemIndex(index, record.spec, record.search)
