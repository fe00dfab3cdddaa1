"""A row's bytes: the checksum that guards them, int8 quantization, the finiteness test.

Checksum: xxh3_64 of the row's little-endian float16 bytes in C order (for the raw layout, the
chunk's bytes), seeded with the xxh3_64 of the item's id (ITEM_CHECKSUM), recorded in the index
when the row is committed: it binds the item to its bytes, so two items whose index entries were
swapped fail it, as a flipped bit, a truncated or zero-filled row do. Versions written before
the seed (extractor.json `checksum: xxh3_64`, CHECKSUM) are checked without it. xxh3 hashes at
tens of GB/s on one core, well above what a disk delivers, so taking it when a row is written
and checking it when it is read costs a few percent (bench/store.py measures both). It finds
corruption and mix-ups; it is not a defence against tampering.

int8: a value is int8 * scale of its token (`quantize_int8`, `dequantize_int8`); readers return
float16 either way; the checksum covers the int8 bytes, then the scale bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xxhash

from featurizer.store.layout import DTYPE, INT8

_EXPONENT = np.uint16(0x7C00)  # float16 exponent bits: all set means Inf or NaN
_BLOCK = 1 << 16  # values all_finite tests at a time


def item_seed(item: str | None) -> int:
    """The checksum's seed for `item`: xxh3_64 of its id; 0 (no binding) for None."""
    return 0 if item is None else xxhash.xxh3_64_intdigest(item.encode("utf-8"))


def row_checksum(data: Any, item: str | None) -> int:
    """xxh3_64 of a row's stored bytes (a C-contiguous little-endian float16 array, or any
    bytes-like object holding those bytes) seeded with `item`'s (None: the legacy checksum)."""
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data, dtype="<f2")
    return xxhash.xxh3_64_intdigest(data, seed=item_seed(item))


def int8_row_checksum(values: Any, scales: Any, item: str | None) -> int:
    """xxh3_64 of an int8 row's stored bytes, seeded as row_checksum: its (L, K, D) int8
    values, then its (L, K) little-endian float16 scales (arrays, or bytes-like objects)."""
    h = xxhash.xxh3_64(seed=item_seed(item))
    h.update(np.ascontiguousarray(values, dtype=INT8) if isinstance(values, np.ndarray) else values)
    h.update(
        np.ascontiguousarray(scales, dtype="<f2") if isinstance(scales, np.ndarray) else scales
    )
    return h.intdigest()


def quantize_int8(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L, K, D) float16 -> ((L, K, D) int8, (L, K) float16 scales), symmetric per token:
    scale = max |x| / 127, so every value is within scale / 2 of int8 * scale (before float16
    rounding). A token of zeros gets scale 1."""
    x = features.astype(np.float32)
    scales = (np.abs(x).max(axis=-1) / 127.0).astype(np.float16)
    scales[scales == 0] = 1.0
    values = np.rint(x / scales[..., None].astype(np.float32))
    return np.clip(values, -127, 127).astype(INT8), scales


def dequantize_int8(values: np.ndarray, scales: np.ndarray, out: np.ndarray) -> np.ndarray:
    """(..., L, K, D) int8 and (..., L, K) float16 scales -> float16 into `out`. Through torch,
    whose vectorized int8 x float16 product is about 4x numpy's (which emulates float16)."""
    import torch

    torch.mul(
        torch.from_numpy(values), torch.from_numpy(scales)[..., None], out=torch.from_numpy(out)
    )
    return out


def all_finite(row: np.ndarray) -> bool:
    """No NaN or Inf in a float16 array: a test of the exponent bits, about ten times faster
    than np.isfinite, which converts float16 to float32 first; a block at a time through one
    small buffer (whole-row temporaries cost a 2.75 MB row more than the test)."""
    bits = np.ascontiguousarray(row, dtype=DTYPE).reshape(-1).view(np.uint16)
    scratch = np.empty(min(_BLOCK, bits.size), dtype=np.uint16)
    for start in range(0, bits.size, _BLOCK):
        part = bits[start : start + _BLOCK]
        masked = np.bitwise_and(part, _EXPONENT, out=scratch[: part.size])
        if (masked == _EXPONENT).any():
            return False
    return True
