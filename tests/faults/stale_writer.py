"""A store writer that can be paused between gathering its rows and writing them (the test
SIGSTOPs it there): python -m tests.faults.stale_writer VERSION LEASE_SECONDS ITEM [ITEM ...].

It takes the version's writer (the lease, with LEASE_SECONDS), allocates a shard for the items
and gathers their rows, prints "ready", and waits for a line on stdin; then it writes the shard,
commits and publishes. It prints "published" and exits 0, or prints the store's one-line error
on stderr and exits 1."""

from __future__ import annotations

import sys

import numpy as np


def main(version: str, lease_seconds: float, items: list[str]) -> int:
    import featurizer.store.lease as lease
    from featurizer.store import FeatureStore, StoreError

    lease.LEASE_SECONDS = lease_seconds
    store = FeatureStore(version)
    try:
        with store.writer() as writer:
            rows = writer.allocate(len(items))
            row_writer = writer.row_writer()
            for i, (item, row) in enumerate(zip(items, rows, strict=True)):
                row_writer.write(row, np.full(store.shape_per_item, i + 1, np.float16), item=item)
            print("ready", flush=True)
            sys.stdin.readline()
            offsets = row_writer.flush()
            for item, row in zip(items, rows, strict=True):
                writer.commit(item, row, f"sha-{item}", 4, 2, offset=offsets[row])
            writer.publish()
    except StoreError as exc:
        print(" ".join(str(exc).split()), file=sys.stderr, flush=True)
        return 1
    print("published", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2]), sys.argv[3:]))
