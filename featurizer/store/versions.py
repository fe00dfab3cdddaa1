"""The versions under a store root: creating one (complete or absent), finding one by
fingerprint or through CURRENT, and listing them. A prompt bank (featurizer.store.bank) is a
version whose extractor.json names its members."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import zarr

from featurizer.config import ExtractorConfig
from featurizer.errors import StoreError
from featurizer.store.io import atomic_write_bytes, fsync_path, now, publish_table
from featurizer.store.layout import (
    ARRAY_NAME,
    CHECKSUM,
    CURRENT_FILE,
    DTYPE,
    EXTRACTOR_FILE,
    FEATURES_DIR,
    INDEX_FILE,
    INDEX_SCHEMA,
    INT8,
    SCALES_NAME,
)

_EXTRACTOR_KEYS = ("fingerprint", "hidden_size", "L", "K", "G")


def version_path(root: Path, fingerprint: str | None = None) -> Path:
    """The directory of an existing version (or bank): root/`fingerprint`, root/CURRENT's, or
    `root` itself when it is a version directory (and `fingerprint` is None or its name)."""
    root = Path(root)
    if (root / EXTRACTOR_FILE).is_file() and fingerprint in (None, root.name):
        return root
    if fingerprint is None:
        fingerprint = read_current(root)
        if fingerprint is None:
            versions = ", ".join(list_versions(root)) or "none"
            raise StoreError(
                f"feature store {root}: no {CURRENT_FILE} file; pass a fingerprint "
                f"(versions: {versions})"
            )
    _check_version_name(root, fingerprint, "a fingerprint")
    path = root / fingerprint
    if not (path / EXTRACTOR_FILE).is_file():
        versions = ", ".join(list_versions(root)) or "none"
        raise StoreError(
            f"feature store {path} not found (no {EXTRACTOR_FILE}; versions: {versions})"
        )
    return path


def _bank_primary(path: Path) -> str | None:
    """The first member of the prompt bank at `path`; None when `path` is a plain version."""
    extractor = _read_extractor(path)
    if extractor.get("kind") != "bank":
        return None
    members = extractor.get("members")
    if not isinstance(members, list) or not members:
        raise StoreError(f"prompt bank {path}: {EXTRACTOR_FILE} names no member versions")
    _check_version_name(path.parent, str(members[0]), "a prompt bank's member")
    return str(members[0])


def set_current(root: Path, fingerprint: str) -> None:
    """Point root/CURRENT at `fingerprint` (atomically)."""
    root = Path(root)
    _check_version_name(root, fingerprint, "CURRENT")
    if not (root / fingerprint / EXTRACTOR_FILE).is_file():
        raise StoreError(f"feature store {root / fingerprint} not found; cannot make it CURRENT")
    atomic_write_bytes(root / CURRENT_FILE, (fingerprint + "\n").encode())


def read_current(root: Path) -> str | None:
    """The fingerprint root/CURRENT names, or None without one. Raises StoreError when it names
    anything but a directory name (a path, "..", a hidden name): CURRENT never leads a reader
    outside the store root."""
    path = Path(root) / CURRENT_FILE
    if not path.is_file():
        return None
    try:
        name = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"feature store file {path} is unreadable: {exc}") from None
    if not name:
        return None
    _check_version_name(Path(root), name, CURRENT_FILE)
    return name


def list_versions(root: Path) -> list[str]:
    """Fingerprints of the versions under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        if path.name.startswith(".") or not (path / EXTRACTOR_FILE).is_file():
            continue
        try:
            created = str(json.loads((path / EXTRACTOR_FILE).read_text()).get("created_at", ""))
        except (OSError, ValueError, AttributeError):
            created = ""
        found.append((created, path.name))
    return [name for _, name in sorted(found)]


def _check_version_name(root: Path, name: str, what: str) -> None:
    """A version is a directory directly under the store root: `name` must be one plain path
    component (no separator, not "." or "..", not hidden)."""
    if (
        not name
        or name in (".", "..")
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or "\0" in name
    ):
        raise StoreError(
            f"feature store {root}: {what} names {name!r}, which is not a version directory "
            "directly under the store root"
        )


def _create_version(root: Path, config: ExtractorConfig, hidden_size: int) -> None:
    """Build the version in a hidden temp dir, then rename it into place: a version directory
    is complete or absent, and concurrent creators agree (the loser opens the winner's). It is
    born with an empty index, so a missing index later means a lost one."""
    fields = config.fingerprint_fields()
    create_version(
        root,
        {
            "fingerprint": config.fingerprint(),
            **fields,
            "fingerprinted": sorted(fields),
            **version_shape(hidden_size, len(config.layers), config.k_tokens, config.new_tokens),
        },
    )


def version_shape(
    hidden_size: int, n_layers: int, k_tokens: int, new_tokens: int, dtype: str = "float16"
) -> dict:
    """The extractor.json keys that describe a version's rows: (L, K, D) float16, or int8 with
    per-token scales (a compact view)."""
    L, K, G = n_layers, k_tokens, new_tokens
    return {
        "hidden_size": int(hidden_size),
        "L": L,
        "K": K,
        "G": G,
        "token_split": {"old": [0, K - G], "new": [K - G, K]},  # half-open row ranges within K
        "dtype": dtype,
        "checksum": CHECKSUM,
    }


def create_version(root: Path, extractor: dict[str, Any]) -> None:
    """A new, empty version under `root` described by `extractor` (its extractor.json: the
    fingerprint, what it hashes, and `version_shape`'s keys), made atomically; an existing one
    with that fingerprint is kept."""
    fingerprint = str(extractor["fingerprint"])
    L, K, hidden_size = int(extractor["L"]), int(extractor["K"]), int(extractor["hidden_size"])
    extractor = {**extractor, "created_at": now().isoformat()}
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{fingerprint}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        group = zarr.open_group(str(tmp / FEATURES_DIR), mode="w", zarr_format=3)
        int8 = extractor.get("dtype") == "int8"
        group.create_array(
            ARRAY_NAME,
            shape=(0, L, K, hidden_size),
            chunks=(1, L, K, hidden_size),
            dtype=INT8 if int8 else DTYPE,
            compressors=None,  # DESIGN §9: zstd is ~10x slower and fp16 barely compresses
            fill_value=0 if int8 else float("nan"),
            dimension_names=["item", "layer", "token", "hidden"],
        )
        if int8:
            group.create_array(
                SCALES_NAME,
                shape=(0, L, K),
                chunks=(1, L, K),
                dtype=DTYPE,
                compressors=None,
                fill_value=float("nan"),
                dimension_names=["item", "layer", "token"],
            )
        publish_table(pa.Table.from_pylist([], schema=INDEX_SCHEMA), tmp / INDEX_FILE)
        atomic_write_bytes(tmp / EXTRACTOR_FILE, (json.dumps(extractor, indent=2) + "\n").encode())
        try:
            os.rename(tmp, root / fingerprint)
        except OSError:
            if not (root / fingerprint / EXTRACTOR_FILE).is_file():
                raise StoreError(
                    f"feature store {root / fingerprint} exists but is not a store version "
                    f"(no {EXTRACTOR_FILE}); move it away"
                ) from None
        else:
            fsync_path(root, directory=True)
    finally:
        if tmp.exists():
            _rmtree(tmp)


def _read_extractor(path: Path) -> dict[str, Any]:
    file = path / EXTRACTOR_FILE
    try:
        extractor = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"feature store {path} not found (no {EXTRACTOR_FILE})") from None
    except (ValueError, OSError) as exc:
        raise StoreError(f"feature store file {file} is not valid JSON: {exc}") from None
    missing = [k for k in _EXTRACTOR_KEYS if not isinstance(extractor, dict) or k not in extractor]
    if missing:
        raise StoreError(f"feature store file {file} lacks {', '.join(missing)}")
    return extractor


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
