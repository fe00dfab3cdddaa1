"""The versions under a store root (a local directory or an object-store prefix): creating one
(complete or absent), finding one by fingerprint or through CURRENT, and listing them. A prompt
bank (featurizer.store.bank) is a version whose extractor.json names its members.

A version is complete once its extractor.json exists: on a local disk the version is built in a
hidden directory and renamed into place; on an object store its other objects (the zarr
metadata, an empty index) are written first and extractor.json last, created only if
absent, so concurrent creators agree and a crash mid-creation leaves objects no listing shows as
a version (the next creation writes them again).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from featurizer.config import ExtractorConfig
from featurizer.errors import StoreError
from featurizer.store import log
from featurizer.store.address import location
from featurizer.store.layout import (
    CURRENT_FILE,
    EXTRACTOR_FILE,
    FEATURES_DIR,
    FORMAT_SHARDED,
    ITEM_CHECKSUM,
    SHARD_ROWS,
    geometries,
    group_metadata,
    now,
)
from featurizer.store.local import LocalLocation, fsync_path
from featurizer.store.location import Location

_EXTRACTOR_KEYS = ("fingerprint", "hidden_size", "L", "K", "G")


def version_path(root: Location | Path | str, fingerprint: str | None = None) -> Location:
    """The directory of an existing version (or bank): root/`fingerprint`, root/CURRENT's, or
    `root` itself when it is a version directory (and `fingerprint` is None or its name)."""
    root = location(root)
    if (root / EXTRACTOR_FILE).exists() and fingerprint in (None, root.name):
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
    if not (path / EXTRACTOR_FILE).exists():
        versions = ", ".join(list_versions(root)) or "none"
        raise StoreError(
            f"feature store {path} not found (no {EXTRACTOR_FILE}; versions: {versions})"
        )
    return path


def bank_primary(path: Location) -> str | None:
    """The first member of the prompt bank at `path`; None when `path` is a plain version."""
    extractor = read_extractor(path)
    if extractor.get("kind") != "bank":
        return None
    members = extractor.get("members")
    if not isinstance(members, list) or not members:
        raise StoreError(f"prompt bank {path}: {EXTRACTOR_FILE} names no member versions")
    _check_version_name(path.parent, str(members[0]), "a prompt bank's member")
    return str(members[0])


def set_current(root: Location | Path | str, fingerprint: str) -> None:
    """Point root/CURRENT at `fingerprint` (an atomic replace)."""
    root = location(root)
    _check_version_name(root, fingerprint, "CURRENT")
    if not (root / fingerprint / EXTRACTOR_FILE).exists():
        raise StoreError(f"feature store {root / fingerprint} not found; cannot make it CURRENT")
    (root / CURRENT_FILE).write_bytes((fingerprint + "\n").encode())


def read_current(root: Location | Path | str) -> str | None:
    """The fingerprint root/CURRENT names, or None without one. Raises StoreError when it names
    anything but a directory name (a path, "..", a hidden name): CURRENT never leads a reader
    outside the store root."""
    root = location(root)
    try:
        name = (root / CURRENT_FILE).read_bytes().decode("utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"feature store file {root / CURRENT_FILE} is unreadable: {exc}") from None
    if not name:
        return None
    _check_version_name(root, name, CURRENT_FILE)
    return name


def list_versions(root: Location | Path | str) -> list[str]:
    """Fingerprints of the versions under `root`, oldest first."""
    root = location(root)
    found = []
    for name in root.children():
        if name.startswith(".") or name == CURRENT_FILE:
            continue
        try:
            extractor = json.loads((root / name / EXTRACTOR_FILE).read_bytes())
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            continue
        except (OSError, ValueError):
            extractor = {}
        created = extractor.get("created_at", "") if isinstance(extractor, dict) else ""
        found.append((str(created), name))
    return [name for _, name in sorted(found)]


def _check_version_name(root: Location, name: str, what: str) -> None:
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


def create_version_of(root: Location, config: ExtractorConfig, hidden_size: int) -> None:
    """The (empty) version of one single-prompt extractor config under `root`."""
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
    per-token scales (a compact view), in shards of SHARD_ROWS rows."""
    L, K, G = n_layers, k_tokens, new_tokens
    return {
        "hidden_size": int(hidden_size),
        "L": L,
        "K": K,
        "G": G,
        "token_split": {"old": [0, K - G], "new": [K - G, K]},  # half-open row ranges within K
        "dtype": dtype,
        "checksum": ITEM_CHECKSUM,
        "shard_rows": SHARD_ROWS,
    }


def create_version(root: Location | Path | str, extractor: dict[str, Any]) -> None:
    """A new, empty format-2 version under `root` described by `extractor` (its extractor.json:
    the fingerprint, what it hashes, and `version_shape`'s keys), made atomically (module
    docstring); an existing one with that fingerprint is kept."""
    root = location(root)
    fingerprint = str(extractor["fingerprint"])
    _check_version_name(root, fingerprint, "a fingerprint")
    extractor = {**extractor, "store_format": extractor.get("store_format", FORMAT_SHARDED)}
    extractor["created_at"] = now().isoformat()
    if isinstance(root, LocalLocation):
        _create_local(root.path, fingerprint, extractor)
    else:
        _write_version(root / fingerprint, extractor)


def _write_version(version: Location, extractor: dict[str, Any]) -> None:
    """Every object of an empty version, extractor.json last (created only if absent)."""
    shape = (int(extractor["L"]), int(extractor["K"]), int(extractor["hidden_size"]))
    (version / FEATURES_DIR / "zarr.json").write_bytes(group_metadata())
    for geometry in geometries(shape, extractor.get("dtype") == "int8"):
        fill = 0 if geometry.dtype.kind == "i" else "NaN"
        metadata = geometry.zarr_metadata(0, fill)
        (version / FEATURES_DIR / geometry.name / "zarr.json").write_bytes(
            json.dumps(metadata, indent=2).encode()
        )
    log.create(version, str(extractor["fingerprint"]))  # born with an index: a lost one is noticed
    created = (version / EXTRACTOR_FILE).create_bytes(
        (json.dumps(extractor, indent=2) + "\n").encode()
    )
    if not created and read_extractor(version).get("fingerprint") != extractor["fingerprint"]:
        raise StoreError(f"feature store {version}: holds another version's {EXTRACTOR_FILE}")


def _create_local(root: Path, fingerprint: str, extractor: dict[str, Any]) -> None:
    """Build the version in a hidden temp dir, then rename it into place: a version directory
    is complete or absent, and concurrent creators agree (the loser opens the winner's)."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{fingerprint}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _write_version(LocalLocation(tmp), extractor)
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
            shutil.rmtree(tmp, ignore_errors=True)


def read_extractor_json(path: Location) -> Any:
    """extractor.json of the version or bank at `path`, as JSON; StoreError naming it."""
    file = path / EXTRACTOR_FILE
    try:
        return json.loads(file.read_bytes().decode("utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        raise StoreError(f"feature store {path} not found (no {EXTRACTOR_FILE})") from None
    except (ValueError, OSError) as exc:
        raise StoreError(f"feature store file {file} is not valid JSON: {exc}") from None


def read_extractor(path: Location) -> dict[str, Any]:
    """A version's extractor.json, with every field the fingerprint hashes."""
    file = path / EXTRACTOR_FILE
    extractor = read_extractor_json(path)
    missing = [k for k in _EXTRACTOR_KEYS if not isinstance(extractor, dict) or k not in extractor]
    if missing:
        raise StoreError(f"feature store file {file} lacks {', '.join(missing)}")
    return extractor
