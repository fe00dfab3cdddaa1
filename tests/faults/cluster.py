"""A real multi-node Ray cluster on this machine for the node-fault tests: a head node (the
driver's) and worker nodes started with ray.cluster_utils.Cluster, every socket on 127.0.0.1.

What it relies on (Ray 2.x):
- nodes started with node_ip_address="127.0.0.1" bind their servers to loopback; the driver's
  ray.init(address=...) rewrites 127.0.0.1 to the routable address unless Ray's cluster mode is
  off while it runs (the switch pipelines.ray_runtime uses for a local Ray);
- Cluster records itself in <RAY_TMPDIR>/ray/ray_current_cluster, which any plain ray.init() on
  the machine would join: RAY_TMPDIR points at a private, short directory (unix socket paths are
  capped at 107 bytes) while the cluster lives;
- add_node and remove_node must run in the main thread;
- health checks every 0.5 s declare a lost node dead within ~2 s (defaults: 15 to 60 s).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LOOPBACK = "127.0.0.1"
FAST_NODE_DEATH = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}


@contextmanager
def loopback_cluster(tmp_dir: str, head_cpus: int) -> Iterator[Any]:
    """A head node with the driver connected; add worker nodes with add_node()."""
    import ray
    from ray.cluster_utils import Cluster

    from pipelines.ray_runtime import loopback_only

    os.environ["RAY_TMPDIR"] = tmp_dir
    cluster = None
    try:
        with loopback_only():
            cluster = Cluster(
                initialize_head=True,
                head_node_args={
                    "num_cpus": head_cpus,
                    "node_ip_address": LOOPBACK,
                    "include_dashboard": False,
                    "object_store_memory": 200 << 20,
                    "_system_config": dict(FAST_NODE_DEATH),
                },
            )
            ray.init(
                address=cluster.address,
                log_to_driver=False,
                logging_level=logging.WARNING,
                configure_logging=False,
            )
        yield cluster
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()


def add_node(cluster: Any, **args: Any) -> Any:
    """A worker node on loopback (call from the main thread)."""
    from pipelines.ray_runtime import loopback_only

    args.setdefault("object_store_memory", 200 << 20)
    with loopback_only():
        return cluster.add_node(node_ip_address=LOOPBACK, **args)


def non_loopback_listeners() -> list[str]:
    """Listening sockets of this process and its descendants (every process of the cluster)
    that are not on loopback."""
    import psutil

    me = psutil.Process()
    pids = {p.pid for p in [me, *me.children(recursive=True)]}
    found = []
    for c in psutil.net_connections(kind="inet"):
        if c.pid in pids and c.status == psutil.CONN_LISTEN:
            ip = c.laddr.ip
            if not (ip.startswith("127.") or ip.startswith("::ffff:127.") or ip == "::1"):
                found.append(f"pid {c.pid} on {ip}:{c.laddr.port}")
    return found
