"""Starting worker processes safely: signals held while forking, OpenCV's thread pool kept out of the child."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from .._env import limit_threads
from ..data.pipeline import Pipeline

SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def forking(start_method: str, pipeline: Pipeline | None = None) -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while workers start, and keep the parent at one OpenCV thread if it forks.

    A signal that lands inside a fork is raised in an at-fork hook, where Python drops it; blocked, it waits and
    is raised right after. Workers unblock signals first thing. Forking while the parent's OpenCV pool is alive
    leaves children that hang in ``cv2.setNumThreads``. The workers' ``pipeline`` is built here first, once:
    forked workers then share the import (albumentations pulls in scipy, and torch when installed) instead of
    each making a private copy (172 MB each, measured).
    """
    if start_method == "fork" and pipeline is not None:
        pipeline.compose  # noqa: B018
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    before = None
    if start_method == "fork":
        import cv2

        before = cv2.getNumThreads()
        cv2.setNumThreads(1)
    try:
        yield
    finally:
        if before is not None:
            import cv2

            cv2.setNumThreads(before)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def worker_started() -> None:
    """First thing in a worker process, whoever started it: Ctrl-C is the parent's to handle (it reaches the whole
    group, and the parent shuts the workers down); SIGTERM just stops (not the CLI's handler, inherited through
    fork); the signals ``forking`` held are let through again; one OpenCV and BLAS thread."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    limit_threads()
