"""Instrumentation points of the Ray workers: a worker calls its hooks when it starts and after
each model call. Nothing is installed in production, and then the workers get None and call
nothing. A test installs a WorkerHooks; the driver asks it, when it starts workers, for the
object to hand them (`for_workers`: picklable, it travels with their arguments), so what a
worker does can depend on the driver's state at that moment, not on the node's environment."""

from __future__ import annotations


class WorkerHooks:
    """Every hook does nothing; an installer overrides the ones it needs."""

    def for_workers(self) -> WorkerHooks | None:
        """What the workers started now get (None: nothing to call)."""
        return self

    def worker_started(self, role: str) -> None:
        """In a worker as it starts: role "extract" (a model actor) or "train"."""

    def model_called(self, item: str) -> None:
        """In an extraction actor, after the model ran on `item`, before its row is written."""


_installed: WorkerHooks | None = None


def install(hooks: WorkerHooks | None) -> None:
    """Install `hooks` for the workers started from now on (None: none)."""
    global _installed
    _installed = hooks


def for_workers() -> WorkerHooks | None:
    """What the driver hands to the workers it starts now."""
    return _installed.for_workers() if _installed is not None else None
