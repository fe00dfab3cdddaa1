"""Store-and-retrieve serving: every item's vector is computed once and saved; a query is the
ranker over the history's vectors, one matrix-vector product and a top-k.

Run directory files written here (the rest of the contract, config.json and metrics.json, by
the caller):

    model.pt             {"format", "model_config", "state_dict"}: tensors and plain values
                         only, so torch.load(weights_only=True) reads it (no code runs)
    item_embeddings.npy  (N, dz) float32, row i = item_ids.parquet row i
    item_ids.parquet     item, has_features, train_count
    gates.parquet        per item with features: item, gate_L<layer>, h_norm_L<layer> for each
                         tapped layer (and id_gate with ID fusion, prompt_<p> for each
                         prompt of a prompt bank: its mixture weight); no rows for variants
                         without a MoE

Read here when present (written by pipelines.index): item_index.faiss and its record
item_index.json (recmodel.index); queries then search the index instead of scanning every
vector, and an index not built from these vectors is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from recmodel.config import ModelConfig
from recmodel.data import PAD, Splits
from recmodel.encoding import encode_catalog
from recmodel.features import ItemFeatureBank
from recmodel.index import ExactSearch, Searcher, faiss_threads, open_index
from recmodel.metrics import rank_eval_set, summarize
from recmodel.model import ItemEncoding, LinkedOutModel
from recmodel.ranker import SASRec

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
EMBEDDINGS_FILE = "item_embeddings.npy"
ITEM_IDS_FILE = "item_ids.parquet"
GATES_FILE = "gates.parquet"
CHECKPOINT_FILE = "checkpoint.pt"
INDEX_FILE = "item_index.faiss"
INDEX_RECORD_FILE = "item_index.json"
MODEL_FORMAT = 1


class UnknownItemsError(ValueError):
    """History items the run's catalog does not hold."""

    def __init__(self, items: Sequence[str]) -> None:
        more = f" (and {len(items) - 20} more)" if len(items) > 20 else ""
        shown = ", ".join(items[:20]) + more
        super().__init__(f"unknown items: {shown}")
        self.items = list(items)


# ---------------------------------------------------------------------------------------------
# Computing vectors


@torch.no_grad()
def history_user_vectors(
    ranker: SASRec, item_vectors: torch.Tensor, history: np.ndarray, batch_size: int = 512
) -> torch.Tensor:
    """history: (M, T) item indices, left-padded with PAD -> user vectors (M, d) on the CPU;
    the ranker runs where its weights are."""
    was_training = ranker.training
    ranker.eval()
    device = next(ranker.parameters()).device
    out = []
    for start in range(0, len(history), batch_size):
        h = torch.from_numpy(history[start : start + batch_size])
        valid = (h != PAD).to(device)
        out.append(ranker.user_vector(item_vectors[h.clamp(min=0)].to(device), valid).cpu())
    ranker.train(was_training)
    if not out:
        return torch.empty(0, item_vectors.shape[1])
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------
# Writing and reading run files


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """`data` as the file `path`, whole or not at all; a failed write (a full disk) removes its
    partial copy and names `path`."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> Any:
    """A run file's JSON; a ValueError naming the file when it is not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


def save_model(run_dir: Path, cfg: ModelConfig, state_dict: dict[str, torch.Tensor]) -> Path:
    path = Path(run_dir) / MODEL_FILE
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(
        {"format": MODEL_FORMAT, "model_config": cfg.to_dict(), "state_dict": state_dict}, tmp
    )
    os.replace(tmp, path)
    return path


def load_tensors(path: Path) -> Any:
    """torch.load that runs nothing: weights_only=True, and a refusal names the file (without
    torch's advice to retry with weights_only=False, which would run what the file asks for)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        what = f" (it calls {found.group(1)})" if found else ""
        raise ValueError(
            f"{path}: refused to load a file that holds more than tensors and plain values{what}; "
            "it was read with torch.load(weights_only=True), so nothing in it ran"
        ) from None


def load_model_file(run_dir: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    path = Path(run_dir) / MODEL_FILE
    blob = load_tensors(path)
    if blob.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: unsupported model format {blob.get('format')!r}")
    return ModelConfig.from_dict(blob["model_config"]), blob["state_dict"]


def write_item_files(
    run_dir: Path,
    items: Sequence[str],
    vectors: np.ndarray,
    has_features: np.ndarray,
    train_counts: np.ndarray,
) -> None:
    run_dir = Path(run_dir)
    path = run_dir / EMBEDDINGS_FILE
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npy")
    np.save(tmp, np.ascontiguousarray(vectors, dtype=np.float32))
    os.replace(tmp, path)
    table = pa.table(
        {
            "item": pa.array(list(items), pa.string()),
            "has_features": pa.array(has_features, pa.bool_()),
            "train_count": pa.array(train_counts, pa.int64()),
        }
    )
    _write_parquet(table, run_dir / ITEM_IDS_FILE)


def write_gates(
    run_dir: Path,
    items: Sequence[str],
    encoding: ItemEncoding | None,
    layers: Sequence[int],
) -> None:
    """gates.parquet: one row per item with features (see the module docstring)."""
    columns: dict[str, pa.Array] = {}
    if encoding is not None and encoding.gates is not None:
        assert encoding.has_features is not None and encoding.h_norm is not None
        with_features = encoding.has_features.numpy()
        columns["item"] = pa.array(np.asarray(items, dtype=object)[with_features], pa.string())
        gates, norms = encoding.gates.numpy(), encoding.h_norm.numpy()
        for j, layer in enumerate(layers):
            columns[f"gate_L{layer}"] = pa.array(gates[:, j], pa.float32())
        for j, layer in enumerate(layers):
            columns[f"h_norm_L{layer}"] = pa.array(norms[:, j], pa.float32())
        if encoding.id_gate is not None:
            columns["id_gate"] = pa.array(encoding.id_gate.numpy()[with_features], pa.float32())
        if encoding.prompt_gates is not None:
            alpha = encoding.prompt_gates.numpy()
            for p in range(alpha.shape[1]):
                columns[f"prompt_{p}"] = pa.array(alpha[:, p], pa.float32())
    else:
        columns["item"] = pa.array([], pa.string())
    _write_parquet(pa.table(columns), Path(run_dir) / GATES_FILE)


def _write_parquet(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_item_ids(run_dir: Path) -> list[str]:
    return pq.read_table(Path(run_dir) / ITEM_IDS_FILE, columns=["item"]).column("item").to_pylist()


def popularity_vectors(train_counts: np.ndarray) -> np.ndarray:
    """The popularity baseline as vectors: item (N, 1) = log(1 + train count), user = [1]."""
    return np.log1p(train_counts.astype(np.float32))[:, None]


def export_run(
    run_dir: Path,
    cfg: ModelConfig,
    model: LinkedOutModel | None,
    bank: ItemFeatureBank | None,
    splits: Splits,
    layers: Sequence[int] | None = None,
    encode_batch_size: int = 256,
    readahead_bytes: int = 256 << 20,
) -> np.ndarray:
    """Write model.pt, item_embeddings.npy, item_ids.parquet and gates.parquet of a trained
    model (None for popularity). Returns the item vectors."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    encoding = None
    if model is None:
        vectors = popularity_vectors(splits.train_counts)
        save_model(run_dir, cfg, {"train_counts": torch.from_numpy(splits.train_counts)})
    else:
        encoding = encode_catalog(
            model, bank, splits.n_items, encode_batch_size, readahead_bytes=readahead_bytes
        )
        vectors = encoding.vectors.numpy()
        save_model(run_dir, cfg, model.state_dict())
    has = bank.has if bank is not None else np.zeros(splits.n_items, dtype=bool)
    write_item_files(run_dir, splits.items, vectors, has, splits.train_counts)
    write_gates(run_dir, splits.items, encoding, layers or list(range(cfg.n_layers)))
    return vectors


# ---------------------------------------------------------------------------------------------
# Queries


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch and faiss on one thread for the block. A query's ops are too small to split: on
    two threads each op waits for the second core, which costs 40% at the median on an idle
    machine and the other processes' time slices at p99 on a busy one (bench/serve.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with faiss_threads(1):
            yield
    finally:
        torch.set_num_threads(before)


def load_ranker(run_dir: Path) -> tuple[ModelConfig, SASRec | None]:
    """The run's config and ranker in eval mode (None for a variant that learns nothing)."""
    cfg, state = load_model_file(run_dir)
    if not cfg.spec.learned:
        return cfg, None
    ranker = SASRec(cfg)
    prefix = "ranker."
    ranker.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    return cfg, ranker.eval()


def _map_vectors(path: Path) -> np.ndarray:
    """item_embeddings.npy as a copy-on-write map: writable for torch, its pages read only
    where queries touch them; a file that cannot be mapped is read the ordinary way, which
    refuses a pickled one (allow_pickle=False)."""
    try:
        return np.load(path, mmap_mode="c", allow_pickle=False)
    except ValueError:  # e.g. an object array: np.load names why it refuses it
        return np.load(path, allow_pickle=False)


class Recommender:
    """A trained run, loaded for queries: `Recommender.load(run).recommend(history, k)`.
    Retrieval goes through the run's item index where one was built, else an exact scan."""

    def __init__(
        self,
        config: ModelConfig,
        items: Sequence[str],
        item_vectors: torch.Tensor,
        ranker: SASRec | None,
        searcher: Searcher | None = None,
    ) -> None:
        self.config = config
        self.items = list(items)
        self.index = {item: i for i, item in enumerate(self.items)}
        self.item_vectors = item_vectors.contiguous()  # (N, d) float32
        self.ranker = ranker.eval() if ranker is not None else None
        self.searcher = searcher or ExactSearch(self.item_vectors.numpy())

    @classmethod
    def load(cls, run_dir: Path | str, use_index: bool = True) -> Recommender:
        """The run's model and vectors (memory-mapped: a query reads its history's rows, the
        index the rest), with its item index when one exists and use_index; an index not
        built from these vectors raises StaleIndexError."""
        run_dir = Path(run_dir)
        cfg, ranker = load_ranker(run_dir)
        array = _map_vectors(run_dir / EMBEDDINGS_FILE)
        if array.dtype != np.float32 or array.ndim != 2:
            array = np.ascontiguousarray(array, dtype=np.float32).reshape(len(array), -1)
        vectors = torch.from_numpy(array)
        items = read_item_ids(run_dir)
        if len(items) != len(vectors):
            raise ValueError(
                f"{run_dir}: {len(items)} items in {ITEM_IDS_FILE} but {len(vectors)} vectors "
                f"in {EMBEDDINGS_FILE}"
            )
        searcher = None
        if use_index and (run_dir / INDEX_RECORD_FILE).is_file():
            searcher = open_index(run_dir / INDEX_RECORD_FILE, run_dir / EMBEDDINGS_FILE)
        return cls(cfg, items, vectors, ranker, searcher)

    def indices(self, items: Sequence[str]) -> list[int]:
        unknown = [i for i in items if i not in self.index]
        if unknown:
            raise UnknownItemsError(list(dict.fromkeys(unknown)))
        return [self.index[i] for i in items]

    def user_vectors(self, history: np.ndarray, batch_size: int = 512) -> torch.Tensor:
        """(M, T) left-padded item indices -> (M, d); popularity: all ones (M, 1)."""
        if self.ranker is None:
            return torch.ones(len(history), 1)
        return history_user_vectors(self.ranker, self.item_vectors, history, batch_size)

    @torch.no_grad()
    def scores(self, history: Sequence[str]) -> torch.Tensor:
        """(N,) scores of every item for one history (history items not excluded)."""
        return self.item_vectors @ self._user_vector(self.indices(history))

    def _user_vector(self, idx: list[int]) -> torch.Tensor:
        """(d,) the user vector of one history (catalog rows, oldest first)."""
        if self.ranker is None:
            return torch.ones(1)
        if not idx:
            raise ValueError("empty history: the ranker needs at least one watched item")
        recent = torch.tensor(idx[-self.config.max_history :])
        return self.ranker.query_vector(self.item_vectors[recent])  # (T, d) -> (d,)

    @torch.inference_mode()
    def recommend(self, history: Sequence[str], k: int = 10) -> list[tuple[str, float]]:
        """The k best items not in `history`, best first, with their scores."""
        idx = self.indices(history)
        seen = set(idx)
        k = max(0, min(k, len(self.items) - len(seen)))
        if k == 0:
            return []
        with one_thread():
            user = self._user_vector(idx).numpy()  # (d,)
            # the history is masked by asking for as many more as it holds
            scores, rows = self.searcher.search(user[None], k + len(seen))  # (1, k')
        return self._unseen(rows[0].tolist(), scores[0].tolist(), seen, k)

    @torch.inference_mode()
    def recommend_batch(
        self, histories: Sequence[Sequence[str]], k: int = 10, batch_size: int = 512
    ) -> list[list[tuple[str, float]]]:
        """recommend() for many histories at once: user vectors batched through the ranker,
        one search for all. Memory: the histories and k + |history| results each."""
        return self.recommend_rows([self.indices(h) for h in histories], k, batch_size)

    @torch.inference_mode()
    def recommend_rows(
        self, histories: Sequence[Sequence[int]], k: int = 10, batch_size: int = 512
    ) -> list[list[tuple[str, float]]]:
        """recommend_batch() over histories given as catalog rows (see indices())."""
        if not histories:
            return []
        if self.ranker is not None and not all(histories):
            raise ValueError("empty history: the ranker needs at least one watched item")
        T = self.config.max_history
        padded = np.full((len(histories), T), PAD, dtype=np.int64)  # (B, T), left-padded
        for i, rows in enumerate(histories):
            recent = list(rows)[-T:]
            padded[i, T - len(recent) :] = recent
        users = self.user_vectors(padded, batch_size).numpy()  # (B, d)
        seen = [set(rows) for rows in histories]
        # the histories are masked by asking for as many more as the longest holds
        scores, found = self.searcher.search(users, k + max(len(s) for s in seen))  # (B, k')
        return [
            self._unseen(found[i].tolist(), scores[i].tolist(), seen[i], k)
            for i in range(len(histories))
        ]

    def _unseen(
        self, rows: list[int], scores: list[float], seen: set[int], k: int
    ) -> list[tuple[str, float]]:
        out = [
            (self.items[r], s)
            for r, s in zip(rows, scores, strict=True)
            if r >= 0 and r not in seen
        ]
        return out[:k]


def evaluate_recommender(
    recommender: Recommender, splits: Splits, batch_size: int = 512, max_bytes: int = 1 << 30
) -> dict[str, Any]:
    """metrics.summarize of the valid and test sets, scored the way queries are served."""
    if recommender.items != splits.items:
        raise ValueError("the run's catalog differs from the splits' catalog")
    out: dict[str, Any] = {}
    for name, evalset in (("valid", splits.valid), ("test", splits.test)):
        users = recommender.user_vectors(evalset.history, batch_size)
        ranks = rank_eval_set(
            users, recommender.item_vectors, evalset, batch_size, max_bytes=max_bytes
        )
        out[name] = summarize(ranks, evalset.target, splits.train_counts)
    return out
