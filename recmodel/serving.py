"""Store-and-retrieve serving: every item's vector is computed once and saved (runfiles.py); a
query is the ranker over the history's vectors, one matrix-vector product and a top-k, through
the run's item index (index.py) where one was built, and an index not built from these vectors
is refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recmodel.config import ModelConfig
from recmodel.data import PAD, Splits
from recmodel.index import ExactSearch, Searcher, faiss_threads, open_index
from recmodel.metrics import rank_eval_set, summarize
from recmodel.ranker import SASRec, history_user_vectors
from recmodel.runfiles import (
    EMBEDDINGS_FILE,
    INDEX_RECORD_FILE,
    ITEM_IDS_FILE,
    load_model_file,
    read_item_ids,
)


class UnknownItemsError(ValueError):
    """History items the run's catalog does not hold."""

    def __init__(self, items: Sequence[str]) -> None:
        more = f" (and {len(items) - 20} more)" if len(items) > 20 else ""
        shown = ", ".join(items[:20]) + more
        super().__init__(f"unknown items: {shown}")
        self.items = list(items)


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
