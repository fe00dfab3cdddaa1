"""One writer per version: a file lock on a local disk (``<version>/.lock``), a lease object on an
object store (``<version>/LEASE``), and the fence every write checks.

The lease is created only if absent (If-None-Match), renewed every LEASE_SECONDS / 3 by its
holder with a conditional PUT on the ETag it last wrote (If-Match), and taken over, again
conditionally, once it is LEASE_SECONDS old. A holder whose renewal is refused has lost it: from
then on its fence refuses every write. A holder that could not renew for LEASE_SECONDS checks
before its next write whether the lease is still its own (a renewal that another writer's
takeover makes fail), and says so if the storage is what failed. A paused
process (SIGSTOP, a long GC, a frozen VM) may still be about to write when it wakes; that is why
every shard object is also written create-only (featurizer.store.writing): a stale writer can
fail or leave garbage no index names, never overwrite what another writer committed.

A local flock cannot lapse while its process lives, and dies with it, so the local fence
checks nothing.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from featurizer.errors import StoreBusyError, StoreError, StoreFencedError
from featurizer.store.layout import LEASE_FILE, LOCK_FILE
from featurizer.store.location import Location

LEASE_SECONDS = 30.0


class Fence:
    """What a writer checks before each write (picklable: Ray workers check it too)."""

    def check(self) -> None:
        """Raise StoreFencedError when this writer no longer holds its version."""

    def check_now(self) -> None:
        """check(), asking the storage rather than what the writer last heard (before a
        commit)."""
        self.check()


class LeaseFence(Fence):
    """The fence of an object-store lease: the LEASE object must still carry `nonce`."""

    def __init__(self, lease: Location, nonce: str) -> None:
        self.lease, self.nonce = lease, nonce

    def check(self) -> None:
        held = read_lease(self.lease)
        if held.get("nonce") != self.nonce:
            raise lost_lease(self.lease, held)


class _Lease(LeaseFence):
    """The holder's side: renews in a thread. A check costs nothing while the last renewal is
    recent; once it is LEASE_SECONDS old (the process was paused, or the storage unreachable) the
    check renews first: that succeeds only if nobody replaced the lease meanwhile (If-Match), and
    a storage error is raised as itself, not taken for a lost lease."""

    def __init__(self, lease: Location, nonce: str, record: dict[str, Any], e_tag: str) -> None:
        super().__init__(lease, nonce)
        self.record, self.e_tag = record, e_tag
        self.renewed = time.monotonic()
        self.lost: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="store-lease", daemon=True)

    def __reduce__(self) -> tuple[Any, ...]:  # a worker gets the fence, not the renewer
        return (LeaseFence, (self.lease, self.nonce))

    def check(self) -> None:
        if self.lost is None and time.monotonic() - self.renewed >= LEASE_SECONDS:
            self._renew_once()  # a StoreIOError here is the news: the storage, not the lease
        if self.lost is not None:
            raise lost_lease(self.lease, self.lost)

    def check_now(self) -> None:
        self.check()
        super().check()

    def _renew_once(self) -> None:
        """Renew unless another writer replaced the lease (then it is lost)."""
        with self._lock:
            if self.lost is not None:
                return
            started = time.monotonic()
            record = {**self.record, "at": time.time()}
            e_tag = self.lease.replace_if(json.dumps(record).encode(), self.e_tag)  # type: ignore[attr-defined]
            if e_tag is None:  # another writer replaced it: it lapsed while this one was away
                self.lost = read_lease(self.lease) or {"why": "it was deleted"}
            else:
                self.e_tag, self.renewed = e_tag, started

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 3) and self.lost is None:
            try:
                self._renew_once()
            except (OSError, StoreError):  # a missed renewal: the next one may pass
                continue

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def lost_lease(lease: Location, holder: dict[str, Any]) -> StoreFencedError:
    who = (
        f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}"
        if "nonce" in holder
        else holder.get("why", "nobody holds it now")
    )
    return StoreFencedError(
        f"feature store {lease.parent}: this writer lost its lease {lease} ({who}); it stops "
        "before writing anything more (what it published stays; rerun it)"
    )


@contextmanager
def hold(version: Location, wait: float = 0.0) -> Iterator[Fence]:
    """Be the one writer of `version` while the block runs: waits up to `wait` seconds, else
    raises StoreBusyError. Yields the fence the writer checks before each write."""
    if version.is_local:
        with _file_lock(version, wait):
            yield Fence()
        return
    lease = _take_lease(version, wait)
    lease.start()
    try:
        yield lease
    finally:
        lease.stop()
        # released if the store can be reached and it is still ours; else it lapses
        # LEASE_SECONDS after its last renewal (the block's own error is the news, not this one)
        with suppress(StoreError, OSError):
            if lease.lost is None and read_lease(lease.lease).get("nonce") == lease.nonce:
                lease.lease.delete()


@contextmanager
def _file_lock(version: Location, wait: float) -> Iterator[None]:
    import filelock

    lock_file = version.path / LOCK_FILE
    lock = filelock.FileLock(str(lock_file), thread_local=False)
    try:
        lock.acquire(timeout=max(wait, 0.0))
    except filelock.Timeout:
        raise StoreBusyError(
            f"feature store {version} is busy: another extraction holds {lock_file} "
            f"(waited {wait:g} s)"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _take_lease(version: Location, wait: float) -> _Lease:
    lease = version / LEASE_FILE
    nonce = uuid.uuid4().hex
    record = {"nonce": nonce, "host": socket.gethostname(), "pid": os.getpid()}
    deadline = time.monotonic() + max(wait, 0.0)
    while True:
        data = json.dumps({**record, "at": time.time()}).encode()
        e_tag = lease.create_versioned(data)  # type: ignore[attr-defined]
        if e_tag is not None:
            return _Lease(lease, nonce, record, e_tag)
        try:
            current, e_tag = lease.read_versioned()  # type: ignore[attr-defined]
        except FileNotFoundError:  # released between the two requests: try again
            continue
        held = _parse(current)
        if held.get("nonce") == nonce:  # a retried create whose first try landed
            return _Lease(lease, nonce, record, e_tag)
        age = time.time() - float(held.get("at", 0)) if held else LEASE_SECONDS
        if age >= LEASE_SECONDS:  # its holder stopped renewing: gone; take it over, if nobody
            new_tag = lease.replace_if(data, e_tag)  # type: ignore[attr-defined]  # else did
            if new_tag is not None:
                return _Lease(lease, nonce, record, new_tag)
            continue
        if time.monotonic() >= deadline:
            raise StoreBusyError(
                f"feature store {version} is busy: another writer holds {lease} (host "
                f"{held.get('host', '?')}, pid {held.get('pid', '?')}, renewed {age:.0f} s ago; "
                f"it lapses {LEASE_SECONDS - age:.0f} s after its last renewal)"
            )
        time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))


def read_lease(lease: Location) -> dict[str, Any]:
    try:
        return _parse(lease.read_bytes())
    except FileNotFoundError:
        return {}


def _parse(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
