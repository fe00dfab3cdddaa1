"""Starting or joining Ray: a local single-machine Ray by default, a cluster when an address is given."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import ray
import ray._private.ray_constants

log = logging.getLogger(__name__)


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join `address` (or $RAY_ADDRESS) if given, else start a local Ray bound to loopback with
    no dashboard, and its watchdog (pipelines.ray_reaper: if this process is killed, the Ray
    processes it started follow within seconds). A Ray already initialised in this process is
    reused as it is."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    quiet = dict(log_to_driver=False, logging_level=logging.WARNING, configure_logging=False)
    if address:
        log.info("joining Ray cluster at %s", address)
        ray.init(address=address, **quiet)
        return
    with loopback_only():
        ray.init(
            num_cpus=num_cpus or os.cpu_count(),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            **quiet,
        )
    _start_reaper()


_REAPERS: dict[int, subprocess.Popen] = {}  # this process's watchdog, started once


def _start_reaper() -> None:
    if os.getpid() in _REAPERS:
        return
    _REAPERS[os.getpid()] = subprocess.Popen(
        [sys.executable, "-m", "pipelines.ray_reaper", str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@contextmanager
def loopback_only() -> Iterator[None]:
    """Make a local Ray's node IP (and so every address its GCS, raylet, agents and workers
    bind) 127.0.0.1. Ray turns `_node_ip_address="127.0.0.1"` into the machine's routable IP
    (services.resolve_ip_for_localhost) unless its cluster mode is off, which is how Ray runs on
    macOS and Windows; without this the servers listen on every interface. Ray has no public
    switch for it (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER is read once, when ray is imported)."""
    constants = ray._private.ray_constants
    before = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if before is not None:
            constants.ENABLE_RAY_CLUSTER = before


def cluster_gpus() -> int:
    return int(ray.cluster_resources().get("GPU", 0))
