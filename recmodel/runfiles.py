"""The files recmodel writes into a run directory and reads back, each written whole or not at
all (a temporary file beside it, fsynced, renamed over it):

    model.pt             {"format", "model_config", "state_dict"}: tensors and plain values
                         only, so torch.load(weights_only=True) reads it (no code runs)
    item_embeddings.npy  (N, dz) float32, row i = item_ids.parquet row i
    item_ids.parquet     item, has_features, train_count
    gates.parquet        per item with features: item, gate_L<layer>, h_norm_L<layer> for each
                         tapped layer (and id_gate with ID fusion, prompt_<p> for each prompt
                         of a prompt bank: its mixture weight); no rows without a MoE
    checkpoint.pt        the resumable training state (checkpoint.py)
    item_index.faiss     the item index and its record item_index.json (index.py)

The rest of the run directory (config.json, metrics.json, serving.json, the report) is the
pipeline's: pipelines/serving/runfiles.py names every file and reads them for every reader.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from recmodel.config import ModelConfig
from recmodel.data import Splits
from recmodel.encoding import encode_catalog
from recmodel.features import ItemFeatureBank
from recmodel.model import ItemEncoding, LinkedOutModel

MODEL_FILE = "model.pt"
EMBEDDINGS_FILE = "item_embeddings.npy"
ITEM_IDS_FILE = "item_ids.parquet"
GATES_FILE = "gates.parquet"
CHECKPOINT_FILE = "checkpoint.pt"
INDEX_FILE = "item_index.faiss"
INDEX_RECORD_FILE = "item_index.json"
MODEL_FORMAT = 1


def refused_pickle(source: Path | str, exc: pickle.UnpicklingError, what: str = "a file") -> str:
    """The one line for a file torch.load(weights_only=True) refused, without torch's advice to
    load it with weights_only=False (which would run whatever the file asks for)."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    calls = f" (it calls {found.group(1)})" if found else ""
    return (
        f"{source}: refused to load {what} that holds more than tensors and plain values{calls}; "
        "it was read with torch.load(weights_only=True), so nothing in it ran"
    )


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` fills a temporary file beside `path`, which then replaces `path`: readers
    see the old file or the new one, whole. A failed write (a full disk) removes its partial
    copy and names `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno is None or exc.filename == str(path):
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from None  # the target, not its tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


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
    blob = {"format": MODEL_FORMAT, "model_config": cfg.to_dict(), "state_dict": state_dict}
    atomic_write(path, lambda tmp: torch.save(blob, tmp))
    return path


def load_tensors(path: Path) -> Any:
    """torch.load that runs nothing: weights_only=True, and a refusal names the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(refused_pickle(path, exc)) from None


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
    array = np.ascontiguousarray(vectors, dtype=np.float32)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append .npy to a name
            np.save(f, array)

    atomic_write(run_dir / EMBEDDINGS_FILE, save)
    table = pa.table(
        {
            "item": pa.array(list(items), pa.string()),
            "has_features": pa.array(has_features, pa.bool_()),
            "train_count": pa.array(train_counts, pa.int64()),
        }
    )
    atomic_write(run_dir / ITEM_IDS_FILE, lambda tmp: pq.write_table(table, tmp))


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
    table = pa.table(columns)
    atomic_write(Path(run_dir) / GATES_FILE, lambda tmp: pq.write_table(table, tmp))


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
