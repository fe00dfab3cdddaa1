"""Prompt banks in the feature store (paper §3.4): every video's features under each prompt of a
small set of canonical prompts, read together by the prompt-mixing variant.

Layout, beside the store's other versions (featurizer.store describes one version)::

    STORE/
      <member fingerprint>/  one ordinary version per prompt: exactly the version a
                             single-prompt preset with that prompt has (rows, index, failures)
      <bank fingerprint>/
        extractor.json       kind "bank"; prompts and members (their fingerprints) in the bank's
                             order; the rows' shape (L, K, D, G), which every member shares;
                             fingerprint = hash of the members' fingerprints, in order
      CURRENT                may name a bank

Why a version per prompt, not a prompt axis in one version, nor shared video rows:
- adding a prompt leaves the other members complete, so extraction runs that prompt alone;
  removing one names fewer members and re-extracts nothing. A prompt axis would be part of the
  version's fingerprint: any change to the bank would extract everything again;
- each member is a version like any other: verified, repaired, derived into compact views and
  read by every single-prompt variant as before. A single-prompt store is already the first
  member of a bank that starts with its prompt (the demo's store kept its fingerprint);
- the video tokens' states are shared between prompts, but the stored old tokens are a merge of
  the video and the text tokens (featurizer.merge), so a video-only row would change the row
  layout every reader depends on. The sharing is in the compute (featurizer.capture runs the
  video once per video), not in the bytes.

Reading. Where one prompt is read (every variant but `full_prompt_bank`, derive, serving), a bank
reads as its first prompt's version: FeatureStore.open resolves it. PromptBank reads them all:
an item's bank row is its P member rows stacked prompt-major, (P * L, K, D), for the items every
member holds; the others have no features (the missing-content vector).

Commit. A bank version holds no rows: it is one object, extractor.json, created only if absent,
so it is never half there; its members each follow the store's commit protocol. A bank whose
member is missing is a problem `verify` reports.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from featurizer.config import ExtractorConfig, fingerprint_of
from featurizer.errors import StoreError
from featurizer.store.address import location
from featurizer.store.layout import DTYPE, EXTRACTOR_FILE, now
from featurizer.store.location import Location
from featurizer.store.reading import FeatureStore
from featurizer.store.verification import VerifyReport
from featurizer.store.versions import read_current, read_extractor_json, version_path

BANK_KIND = "bank"


def create_bank(root: Location | Path | str, config: ExtractorConfig, hidden_size: int) -> Location:
    """The bank version of `config` (a bank config) under `root`, created if missing: one
    object, extractor.json, created only if absent (complete or absent, on any storage)."""
    root = location(root)
    fingerprint = config.fingerprint()
    path = root / fingerprint
    if (path / EXTRACTOR_FILE).exists():
        return path
    fields = config.fingerprint_fields()
    L, K, G = len(config.layers), config.k_tokens, config.new_tokens
    extractor = {
        "fingerprint": fingerprint,
        "kind": BANK_KIND,
        **fields,
        "fingerprinted": sorted(fields),
        "prompts": list(config.prompts),
        "members": list(fields["bank"]),
        "hidden_size": int(hidden_size),
        "L": L,
        "K": K,
        "G": G,
        "layers": list(config.layers),
        "new_tokens": G,
        "dtype": "float16",
        "created_at": now().isoformat(),
    }
    (path / EXTRACTOR_FILE).create_bytes((json.dumps(extractor, indent=2) + "\n").encode())
    return path


@dataclass
class BankVerifyReport:
    """verify() of a bank: the bank's own problems and each member's VerifyReport."""

    path: Path
    prompts: list[str]
    members: list[VerifyReport]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(m.ok for m in self.members)

    @property
    def bad_rows(self) -> dict[str, str]:
        """item -> what is wrong, over every member (named by its prompt number)."""
        return {
            f"{item} (prompt {i})": why
            for i, member in enumerate(self.members)
            for item, why in member.bad_rows.items()
        }

    def describe(self) -> str:
        head = (
            f"{'OK' if self.ok else 'FAILED'}: prompt bank {self.path}: "
            f"{len(self.prompts)} prompts, one store version each"
        )
        lines = [head, *(f"  - {p}" for p in self.problems)]
        for i, (prompt, report) in enumerate(zip(self.prompts, self.members, strict=True)):
            lines.append(f"  prompt {i}: {_short(prompt)}")
            lines += ["    " + line for line in report.describe().splitlines()]
        return "\n".join(lines)


class PromptBank:
    """The prompts of a bank version and their member versions, read together. A plain
    version opens as a bank of one (its own prompt)."""

    def __init__(self, path: Location, prompts: Sequence[str], members: Sequence[FeatureStore]):
        self.path = path
        self.prompts = list(prompts)
        self.members = list(members)
        shapes = {(m.shape_per_item, int(m.extractor["G"])) for m in self.members}
        if len(shapes) > 1:
            raise StoreError(
                f"prompt bank {self.path}: its members' rows differ in shape: {shapes}"
            )

    @classmethod
    def open(cls, root: Location | Path | str, fingerprint: str | None = None) -> PromptBank:
        """The bank (or plain version) at root/fingerprint, at root/CURRENT, or at `root` when it
        is a version directory itself."""
        path = version_path(root, fingerprint)
        extractor = _read(path)
        if extractor.get("kind") != BANK_KIND:
            store = FeatureStore.open(path)
            return cls(path, [str(extractor.get("prompt_template", ""))], [store])
        members = [str(m) for m in extractor.get("members", [])]
        prompts = [str(p) for p in extractor.get("prompts", [])]
        if not members or len(members) != len(prompts):
            raise StoreError(f"prompt bank {path}: {EXTRACTOR_FILE} lacks its prompts or members")
        missing = [m for m in members if not (path.parent / m / EXTRACTOR_FILE).exists()]
        if missing:
            raise StoreError(
                f"prompt bank {path}: member version(s) {', '.join(missing)} not found under "
                f"{path.parent}; `linkedout extract` with the bank's preset extracts them"
            )
        return cls(path, prompts, [FeatureStore.open(path.parent, m) for m in members])

    @property
    def fingerprint(self) -> str:
        return self.path.name

    @property
    def is_bank(self) -> bool:
        """A bank version (not a plain version opened as a bank of one)."""
        return _read(self.path).get("kind") == BANK_KIND

    @property
    def primary(self) -> FeatureStore:
        """The first prompt's version: what single-prompt readers of this bank read."""
        return self.members[0]

    @property
    def shape_per_item(self) -> tuple[int, int, int]:
        """(L, K, D) of one prompt's row."""
        return self.primary.shape_per_item

    @property
    def new_tokens(self) -> int:
        return int(self.primary.extractor["G"])

    @property
    def row_shape(self) -> tuple[int, int, int]:
        """(P * L, K, D): an item's bank row, prompt-major."""
        L, K, D = self.shape_per_item
        return (len(self.members) * L, K, D)

    def held(self) -> tuple[pa.Array, np.ndarray]:
        """The items every member holds, and their rows: (n,) items, (n, P) int64 rows in
        each member, sorted by the first member's row (columns, not an object per item)."""
        items = self.members[0].index_table().column("item").combine_chunks()
        rows = np.stack([m.rows_of(items) for m in self.members], axis=1) if len(items) else (
            np.zeros((0, len(self.members)), np.int64)
        )  # fmt: skip
        every = (rows >= 0).all(axis=1)
        items, rows = items.filter(pa.array(every)), rows[every]
        order = np.argsort(rows[:, 0], kind="stable")
        return items.take(pa.array(order)), rows[order]

    def item_rows(self, catalog: Sequence[str] | pa.Array) -> np.ndarray:
        """(n,) int64: each catalog item's row in the first member (its bank row's key), -1
        where any member lacks the item."""
        rows = np.stack([m.rows_of(catalog) for m in self.members], axis=1)
        return np.where((rows >= 0).all(axis=1), rows[:, 0], -1) if len(rows) else rows[:, 0]

    def read_rows(self, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        """(n,) first-member rows (item_rows) -> (n, P * L, K, D) float16 bank rows."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        _, held = self.held()
        at = np.minimum(np.searchsorted(held[:, 0], rows), max(len(held) - 1, 0))
        known = (held[at, 0] == rows) if len(held) else np.zeros(len(rows), bool)
        if not known.all():
            raise StoreError(
                f"prompt bank {self.path}: rows {rows[~known][:5].tolist()} are not rows of an "
                "item every prompt's version holds"
            )
        L = self.shape_per_item[0]
        out = np.empty((rows.size, *self.row_shape), dtype=DTYPE)
        for j, member in enumerate(self.members):
            out[:, j * L : (j + 1) * L] = member.read_rows(held[at, j])
        return out

    def verify(self, check_values: bool = True) -> BankVerifyReport:
        report = BankVerifyReport(
            path=self.path,
            prompts=self.prompts,
            members=[m.verify(check_values=check_values) for m in self.members],
        )
        if self.is_bank:
            e = _read(self.path)
            fields = {key: e.get(key) for key in e.get("fingerprinted", [])}
            expected = fingerprint_of(fields)
            if expected != self.path.name or e.get("fingerprint") != self.path.name:
                report.problems.append(
                    f"{EXTRACTOR_FILE}: its members hash to {expected}, not {self.path.name}"
                )
        return report

    def info(self) -> str:
        """A human-readable summary: the bank, its prompts, then each member version."""
        current = read_current(self.path.parent)
        L, K, D = self.shape_per_item
        n_items = len(self.held()[0])
        lines = [
            f"prompt bank {self.path}" + (" (CURRENT)" if current == self.fingerprint else ""),
            f"  prompts       {len(self.prompts)}, one store version each; rows (P*L, K, D) = "
            f"{self.row_shape} for the {n_items} items every prompt holds",
        ]
        for i, (prompt, member) in enumerate(zip(self.prompts, self.members, strict=True)):
            lines.append(f"  prompt {i}      {member.fingerprint}  {_short(prompt, 500)}")
        lines.append(f"  per item      {len(self.prompts) * self.primary.row_bytes:,} bytes as "
                     f"stored ({len(self.prompts)} x {self.primary.row_bytes:,}, L={L}, K={K}, "
                     f"D={D}, {self.primary.extractor.get('dtype', 'float16')})")  # fmt: skip
        for member in self.members:
            lines += [""] + member.info().splitlines()
        return "\n".join(lines)


def bank_extractor(path: Location | Path | str) -> dict[str, Any] | None:
    """The extractor.json of the bank version at `path`, None when it is not a bank."""
    try:
        extractor = _read(location(path))
    except StoreError:
        return None
    return extractor if extractor.get("kind") == BANK_KIND else None


def _read(path: Location) -> dict[str, Any]:
    """A bank's (or a version's) extractor.json: a JSON object, whatever its fields."""
    value = read_extractor_json(path)
    if not isinstance(value, dict):
        raise StoreError(f"feature store file {path / EXTRACTOR_FILE} is not a JSON object")
    return value


def _short(prompt: str, limit: int = 90) -> str:
    text = " ".join(prompt.replace("\n", " ⏎ ").split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")
