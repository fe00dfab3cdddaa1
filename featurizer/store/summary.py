"""`linkedout store info`: one version described for a person (what it holds, its layout, what
it takes per item)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from featurizer.store.layout import CHECKSUM, FEATURES_DIR, FORMAT_LEGACY
from featurizer.store.location import Location
from featurizer.store.versions import read_current

if TYPE_CHECKING:
    from featurizer.store.reading import FeatureStore


def describe_version(store: FeatureStore) -> str:
    """A human-readable summary of one version."""
    e = store.extractor
    L, K, D = store.shape_per_item
    store.index_view.refresh()
    n_items, n_failures = store.index_view.counts()
    if store.format == FORMAT_LEGACY:
        n_checksums = n_items - store.index_table().column("checksum").null_count
        checksums = f"{n_checksums} of {n_items} committed rows ({e.get('checksum', CHECKSUM)})"
    else:
        checksums = f"every committed row ({e.get('checksum', CHECKSUM)})"
    objects = store.path.walk()
    features = [size for key, size in objects if key.startswith(f"{FEATURES_DIR}/")]
    data = [s for (key, s) in objects if "/c/" in key]
    current = read_current(store.path.parent)
    layout = (
        f"format 2: {len(data)} shard objects of up to {store.geometries[0].rows} rows"
        if store.format != FORMAT_LEGACY
        else f"format 1 (read-only): {len(data)} chunk files, one a row"
    )
    return "\n".join(
        [
            f"feature store {store.path}" + (" (CURRENT)" if current == store.fingerprint else ""),
            f"  fingerprint   {store.fingerprint}  (created {e.get('created_at')})",
            f"  model         {e.get('model')} @ {e.get('revision')}",
            f"  layers        {e.get('layers')}  (L={L})",
            f"  tokens        K={K}: {K - int(e['G'])} merged old ({e.get('merge')}) "
            f"+ G={e['G']} new",
            f"  frames        {e.get('frames')} at {e.get('resolution')}px",
            f"  hidden size   D={D}",
            *_derived_line(e),
            f"  items         {n_items} committed, {n_failures} failed, "
            f"{store.n_rows} rows allocated",
            f"  checksums     {checksums}",
            f"  layout        {layout}",
            f"  stored        {_human(sum(s for _, s in objects))} "
            f"({_human(sum(features))} features)",
            f"  per item      {_human(store.row_bytes)} raw "
            f"({'L*K*D int8 + L*K*2 scales' if store.int8 else 'L*K*D*2'})",
        ]
    )


def directory_bytes(path: Location) -> int:
    """Bytes of every object below `path`."""
    return sum(size for _, size in path.walk())


def _derived_line(extractor: dict[str, Any]) -> list[str]:
    d = extractor.get("derived_from")
    if not d:
        return []
    return [
        f"  derived from  {d['fingerprint']}: layers {d['layers']}, K={d['k_tokens']} ({d['merge']})"
    ]


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"
