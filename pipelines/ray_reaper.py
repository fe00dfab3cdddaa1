"""The watchdog of a command's local Ray: `python -m pipelines.ray_reaper PID`, started by
pipelines.ray_runtime beside the local Ray it starts.

A command killed with SIGKILL cannot shut its Ray down. Ray's GCS and raylet notice and exit,
but the raylet's agents (dashboard and runtime-env, about 90 MB each) first try to report the
raylet's death to the GCS that died with it, and wait a minute for it. This process notes, every
SCAN_SECONDS, which processes descend from the command; once the command is gone it sends them
SIGTERM, then SIGKILL to those still there GRACE_SECONDS later, and exits. A process is known by
its pid and start time, so a pid the system gave to another process since is left alone. It
imports nothing but the standard library, so it costs a few MB."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

SCAN_SECONDS = 1.0
GRACE_SECONDS = 3.0


def _table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start time in clock ticks) of every live process, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] in ("Z", "X"):  # a zombie is dead already
            continue
        found[int(entry.name)] = (int(fields[1]), int(fields[19]))
    return found


def _descendants(roots: set[int], table: dict[int, tuple[int, int]]) -> dict[int, int]:
    """pid -> start time of every live process below `roots` (the roots excluded)."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = {}, list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found and child != os.getpid():
                found[child] = table[child][1]
                todo.append(child)
    return found


def _signal(known: dict[int, int], signum: int) -> dict[int, int]:
    """Send `signum` to the known processes still alive as themselves; returns those."""
    table = _table()
    alive = {pid: start for pid, start in known.items() if table.get(pid, (0, -1))[1] == start}
    for pid in alive:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass
    return alive


def watch(command: int) -> None:
    """Note `command`'s descendants while it lives; then end the ones it left behind."""
    known: dict[int, int] = {}
    while os.getppid() == command:
        known.update(_descendants({command}, _table()))
        time.sleep(SCAN_SECONDS)
    table = _table()
    alive = {pid for pid, start in known.items() if table.get(pid, (0, -1))[1] == start}
    known = {**known, **_descendants(alive, table)}  # and what they started since the last scan
    if _signal(known, signal.SIGTERM):
        time.sleep(GRACE_SECONDS)
        _signal(known, signal.SIGKILL)


if __name__ == "__main__":
    watch(int(sys.argv[1]))
