"""The feature store on object storage: the same versions, shards, snapshots and checks under
s3://bucket/prefix, on a real S3-compatible server (moto, loopback), configured only by the
standard AWS variables."""

from __future__ import annotations

import numpy as np
import pytest

from featurizer.config import ExtractorConfig
from featurizer.store import (
    FeatureStore,
    StoreBusyError,
    StoreError,
    list_versions,
    location,
    read_current,
    set_current,
)
from featurizer.store.layout import SHARD_ROWS
from tests.s3 import KEY_ID, SECRET, environment

D = 16
CONFIG = ExtractorConfig(model="test-model", layers=(0, 4, 8), k_tokens=8, new_tokens=2)


def _features(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((3, 8, D)).astype(np.float16)


@pytest.fixture
def root(s3) -> str:
    with environment(s3.env()):
        yield f"s3://{s3.bucket()}/stores/demo"


def _write(store: FeatureStore, items: list[str], seed: int = 0) -> None:
    with store.writer() as w:
        rows = w.allocate(len(items))
        writer = w.row_writer()
        for i, (row, item) in enumerate(zip(rows, items, strict=True)):
            writer.write(row, _features(seed + i), item=item)
            w.commit(item, row, f"sha-{item}", 500, 2)


def test_a_version_on_s3_writes_reads_and_verifies_like_a_local_one(root: str) -> None:
    store = FeatureStore.create_or_open(root, CONFIG, hidden_size=D)
    _write(store, ["a", "b", "c"])
    set_current(root, store.fingerprint)

    reopened = FeatureStore.open(root)

    assert str(reopened.path) == f"{root}/{CONFIG.fingerprint()}" and read_current(root)
    assert list_versions(root) == [CONFIG.fingerprint()]
    assert np.array_equal(reopened.read(["c", "a"]), np.stack([_features(2), _features(0)]))
    assert reopened.verify().ok
    assert "format 2: 1 shard objects" in reopened.info()


def test_its_objects_are_shards_its_index_log_and_metadata_only(root: str) -> None:
    store = FeatureStore.create_or_open(root, CONFIG, hidden_size=D)
    _write(store, [f"v{i}" for i in range(SHARD_ROWS + 1)])

    keys = sorted(key for key, _ in store.path.walk())

    assert keys == [
        "extractor.json",
        "features.zarr/features/c/0/0/0/0",
        "features.zarr/features/c/1/0/0/0",
        "features.zarr/features/zarr.json",
        "features.zarr/zarr.json",
        f"index/checkpoint/{1:020d}.parquet",  # its one commit, folded as the writer closed
    ]  # no lease left behind, no rename temp files


def test_zarr_reads_the_sharded_array_on_s3_through_its_own_object_store(s3, root: str) -> None:
    import zarr
    from obstore.store import S3Store
    from zarr.storage import ObjectStore

    store = FeatureStore.create_or_open(root, CONFIG, hidden_size=D)
    _write(store, ["a", "b", "c"])
    bucket, prefix = root[len("s3://") :].split("/", 1)
    objects = S3Store(
        bucket,
        endpoint=s3.endpoint,
        access_key_id=KEY_ID,
        secret_access_key=SECRET,
        region="us-east-1",
        client_options={"allow_http": True},
    )

    array = zarr.open_array(
        ObjectStore(objects, read_only=True),
        path=f"{prefix}/{CONFIG.fingerprint()}/features.zarr/features",
        mode="r",
    )

    assert array.shards == (SHARD_ROWS, 3, 8, D) and array.chunks == (1, 3, 8, D)
    assert np.array_equal(array[:3], np.stack([_features(0), _features(1), _features(2)]))


def test_a_second_writer_on_s3_is_refused_while_the_lease_is_held(root: str) -> None:
    store = FeatureStore.create_or_open(root, CONFIG, hidden_size=D)
    other = FeatureStore.open(f"{root}/{CONFIG.fingerprint()}")

    with store.writer():
        with pytest.raises(StoreBusyError, match="is busy: another writer holds .*LEASE"):
            with other.writer(wait=0):
                pass
    with other.writer(wait=0):  # released on exit
        pass


def test_readers_see_only_committed_snapshots_while_a_writer_works(root: str) -> None:
    store = FeatureStore.create_or_open(root, CONFIG, hidden_size=D)
    reader = FeatureStore.open(f"{root}/{CONFIG.fingerprint()}")

    with store.writer() as w:
        rows = w.allocate(2)
        writer = w.row_writer()
        writer.write(rows[0], _features(0), item="a")
        w.commit("a", rows[0], "sha-a", 500, 2)
        assert reader.index() == {}  # not published yet: invisible
        w.publish()
        assert reader.index() == {"a": 0}  # the next snapshot, whole


def test_a_url_without_bucket_or_of_another_scheme_is_one_line(s3) -> None:
    with pytest.raises(StoreError, match="no bucket name"):
        location("s3:///prefix")
    with pytest.raises(StoreError, match="gs:// is not supported"):
        location("gs://bucket/prefix")


def test_a_missing_bucket_is_named_and_no_credential_appears(s3) -> None:
    with environment(s3.env()):
        with pytest.raises(StoreError) as info:
            FeatureStore.open("s3://no-such-bucket/store")

    message = str(info.value)
    assert "bucket 'no-such-bucket' does not exist" in message and "\n" not in message
    assert KEY_ID not in message and SECRET not in message
